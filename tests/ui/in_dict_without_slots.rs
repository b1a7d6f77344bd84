use reduce::Reduce;

#[derive(Reduce)]
#[reduce(state)]
struct Point {
    x: f64,
    #[reduce(in_dict)]
    note: String,
}

fn main() {}
