//! Starting as easily as Ray: the first `remote` (of a function or an
//! actor) or `put` in a process without a node starts one from `Config::default()`, and
//! `init_once` gives every caller of a process (every `#[test]` of a binary,
//! run in parallel threads) that same node. This binary never calls `init`
//! before its first use of the API.

use shoal::{Config, Error};

#[shoal::remote]
fn double(n: u64) -> u64 {
    n * 2
}

#[test]
fn the_first_remote_starts_a_node_from_the_default_config() -> anyhow::Result<()> {
    assert_eq!(shoal::get(&double::remote(21))?, 42);
    // It is init_once's node, with the default config.
    let node = shoal::init_once(Config::default())?;
    assert!(node.live_workers() >= 1);
    Ok(())
}

#[test]
fn the_first_put_starts_one_too() -> anyhow::Result<()> {
    let r = shoal::put(String::from("started"))?;
    assert_eq!(shoal::get(&r)?, "started");
    Ok(())
}

#[test]
fn init_once_gives_every_caller_the_same_node() -> anyhow::Result<()> {
    let nodes: Vec<usize> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| shoal::init_once(Config::default()).map(|n| n as *const shoal::Shoal as usize)))
            .collect();
        callers.into_iter().map(|c| c.join().expect("a caller")).collect::<Result<_, _>>()
    })?;
    assert!(nodes.windows(2).all(|w| w[0] == w[1]), "one node for all");
    assert_eq!(shoal::get(&double::remote(2))?, 4);
    Ok(())
}

#[test]
fn another_config_or_a_second_init_is_already_initialized() -> anyhow::Result<()> {
    shoal::init_once(Config::default())?;
    assert!(matches!(shoal::init_once(Config::default().workers(7)), Err(Error::AlreadyInitialized)));
    assert!(matches!(shoal::init(Config::default()), Err(Error::AlreadyInitialized)));
    Ok(())
}

/// Counts.
pub struct Tally {
    n: u64,
}

#[shoal::actor]
impl Tally {
    /// Starts at `n`.
    pub fn new(n: u64) -> Self {
        Tally { n }
    }

    /// Adds one; the new count.
    pub fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

#[test]
fn creating_an_actor_first_starts_a_node_too() -> anyhow::Result<()> {
    let tally = Tally::remote(41);
    assert_eq!(shoal::get(&tally.bump())?, 42);
    Ok(())
}
