//! Worker output reaches the driver's terminal: each line prefixed with the
//! function (or actor) and the worker's pid, whole lines only, a line
//! without its newline flushed when its task ends, and nothing with
//! `Config::log_to_driver(false)`. The driver is this test binary run again
//! as a child (the ignored `printer` test), its output captured.

use std::process::Command;

const PRINTER_ENV: &str = "SHOAL_TEST_PRINTER";

#[shoal::remote]
fn chatty(n: u32) -> u32 {
    for i in 0..n {
        println!("line {i} of chatty {n}");
    }
    eprintln!("a warning from chatty {n}");
    std::process::id()
}

/// Prints without a newline, then stays alive (its worker too).
#[shoal::remote]
fn no_newline() -> u32 {
    print!("unfinished business");
    std::process::id()
}

/// Says its output, from an actor.
pub struct Herald;

#[shoal::actor]
impl Herald {
    /// A herald.
    pub fn new(_tag: u8) -> Self {
        Herald
    }

    /// Prints `what`.
    pub fn announce(&self, what: String) -> u32 {
        println!("hear ye: {what}");
        std::process::id()
    }
}

#[test]
#[ignore = "a driver whose output a test reads, run by it as a child process"]
fn printer() -> anyhow::Result<()> {
    let Some(mode) = std::env::var_os(PRINTER_ENV) else { return Ok(()) };
    let node = shoal::init(shoal::Config::default().workers(2).log_to_driver(mode == "on"))?;
    let pids: Vec<u32> = shoal::get_all(&(0..4).map(|_| chatty::remote(50)).collect::<Vec<_>>())?;
    let quiet = shoal::get(&no_newline::remote())?;
    let herald = Herald::remote(0);
    let actor = shoal::get(&herald.announce(String::from("the king")))?;
    // Give the relays a moment, then say which pids to look for.
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Four tasks on two workers: any of the four pids may be either worker's.
    println!("PIDS {quiet} {actor} {} {} {} {}", pids[0], pids[1], pids[2], pids[3]);
    drop(node);
    Ok(())
}

fn run_printer(mode: &str) -> (String, String) {
    let output = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "printer", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(PRINTER_ENV, mode)
        .env_remove(shoal::ADDRESS_ENV)
        .output()
        .expect("run the printer");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned());
    assert!(output.status.success(), "the printer failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn worker_lines_reach_the_driver_prefixed_and_whole() {
    let (stdout, stderr) = run_printer("on");
    let pids = stdout.lines().find_map(|l| l.strip_prefix("PIDS ")).expect("the printer's pids");
    let pids: Vec<&str> = pids.split(' ').collect();
    for n in 0..50 {
        let want = format!("line {n} of chatty 50");
        let lines: Vec<&str> = stdout.lines().filter(|l| l.ends_with(&want)).collect();
        assert_eq!(lines.len(), 4, "four tasks printed {want:?}:\n{stdout}");
        for line in lines {
            // (libtest's own "test printer ... " may open the first line.)
            let line = &line[line.find('(').expect("a prefix")..];
            assert!(line.starts_with("(chatty pid="), "prefixed: {line:?}");
            let chatty_pids = &pids[2..];
            assert!(
                chatty_pids.iter().any(|p| line.starts_with(&format!("(chatty pid={p}) "))),
                "a worker's pid: {line:?}"
            );
        }
    }
    // Whole lines only: every worker line is one prefix and one message.
    for line in stdout.lines().filter(|l| l.contains(" pid=")) {
        assert_eq!(line.matches(" pid=").count(), 1, "two lines in one: {line:?}");
    }
    assert!(!stdout.contains("shoal-runs"), "the workers' notes are taken out:\n{stdout}");
    assert_eq!(stderr.lines().filter(|l| l.contains("(chatty pid=") && l.contains("a warning")).count(), 4);
    assert!(stdout.contains(&format!("(no_newline pid={}) unfinished business", pids[0])), "{stdout}");
    assert!(stdout.contains(&format!("(Herald pid={}) hear ye: the king", pids[1])), "{stdout}");
}

#[test]
fn log_to_driver_false_keeps_worker_output_away() {
    let (stdout, stderr) = run_printer("off");
    assert!(!stdout.contains("chatty") && !stdout.contains("hear ye") && !stdout.contains("unfinished"), "{stdout}");
    assert!(!stderr.contains("a warning from chatty"), "{stderr}");
}
