use reduce::Reduce;

#[derive(Reduce)]
#[reduce(module = "geometry::shapes")]
struct Point {
    x: f64,
}

fn main() {}
