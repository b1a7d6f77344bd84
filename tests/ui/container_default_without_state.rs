use reduce::Reduce;

#[derive(Reduce, Default)]
#[reduce(default)]
struct Point {
    x: f64,
}

fn main() {}
