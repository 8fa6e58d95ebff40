//! A worker program built from other code than the test drivers: it registers
//! a different set of remote functions, so a driver that points
//! `Config::worker_program` at it must be refused with `FunctionNotFound`.

#[shoal::remote]
fn only_in_other_worker(n: u8) -> u8 {
    n
}

fn main() {
    println!("{}", only_in_other_worker(1));
}
