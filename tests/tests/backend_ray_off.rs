//! Without shoal's `ray` feature (this crate's build), asking for a Ray
//! cluster is a clear error, never a silent embedded node; the
//! `SHOAL_RAY_ADDRESS` a shell exported for Ray drivers is ignored, said.

use shoal::Error;

#[test]
fn a_ray_cluster_needs_the_feature() {
    match shoal::init(shoal::Config::default().ray("127.0.0.1:6379").ray_library("/nowhere")) {
        Err(Error::Unsupported(why)) => {
            assert!(why.contains("`ray` feature") && why.contains("127.0.0.1:6379"), "{why}")
        }
        other => panic!("expected Unsupported, got {:?}", other.err()),
    }
    // Nothing was started: an embedded node still can be.
    let _node = shoal::init(shoal::Config::default().workers(1)).expect("an embedded node");
}

#[test]
fn the_ray_address_variable_is_ignored_and_said() {
    if std::env::var_os(shoal::RAY_ADDRESS_ENV).is_some() {
        // The child: an embedded node runs despite the variable.
        let _node = shoal::init(shoal::Config::default().workers(1)).expect("an embedded node");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "the_ray_address_variable_is_ignored_and_said", "--nocapture"])
        .env(shoal::RAY_ADDRESS_ENV, "127.0.0.1:6379")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("SHOAL_RAY_ADDRESS=127.0.0.1:6379 is ignored"), "{stderr}");
}
