//! Without shoal's `ray` feature (this crate's build), asking for a Ray
//! cluster is a clear error, never a silent embedded node.

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
