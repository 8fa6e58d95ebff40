// A method given an argument of the wrong type.

struct Counter {
    n: i64,
}

#[shoal::actor]
impl Counter {
    pub fn new(start: i64) -> Self {
        Counter { n: start }
    }

    pub fn add(&mut self, k: i64) -> i64 {
        self.n += k;
        self.n
    }
}

fn main() {
    let counter = Counter::remote(0);
    let _ = counter.add("five");
}
