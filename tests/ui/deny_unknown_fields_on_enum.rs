use reduce::Reduce;

#[derive(Reduce)]
#[reduce(deny_unknown_fields)]
enum Shape {
    Circle { r: f64 },
}

fn main() {}
