use reduce::Reduce;

#[derive(Reduce)]
#[reduce(deny_unknown_fields)]
struct Point {
    x: f64,
    y: f64,
}

fn main() {}
