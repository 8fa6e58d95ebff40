// A remote function, an actor method and a return type over a type without
// serde's traits; each is called several times.

struct Point {
    x: f64,
    y: f64,
}

#[shoal::remote]
fn norm(p: Point) -> f64 {
    (p.x * p.x + p.y * p.y).sqrt()
}

#[shoal::remote]
fn origin() -> Point {
    Point { x: 0.0, y: 0.0 }
}

struct Plotter {
    plotted: usize,
}

#[shoal::actor]
impl Plotter {
    pub fn new() -> Self {
        Plotter { plotted: 0 }
    }

    pub fn plot(&mut self, p: Point) -> usize {
        self.plotted += (p.x + p.y) as usize;
        self.plotted
    }
}

fn main() {
    let _ = norm::remote(Point { x: 1.0, y: 2.0 });
    let _ = norm::remote(Point { x: 3.0, y: 4.0 });
    let _ = origin::remote();
    let plotter = Plotter::remote();
    let _ = plotter.plot(Point { x: 1.0, y: 2.0 });
    let _ = plotter.plot(Point { x: 3.0, y: 4.0 });
}
