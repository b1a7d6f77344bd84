use reduce::Reduce;

#[derive(Reduce)]
#[reduce(name = "A", name = "B")]
struct Point {
    x: f64,
}

fn main() {}
