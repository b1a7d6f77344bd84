use reduce::Reduce;

#[derive(Reduce)]
#[reduce(state)]
enum Shape {
    Dot,
}

fn main() {}
