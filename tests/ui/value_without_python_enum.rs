use reduce::Reduce;

#[derive(Reduce)]
enum Color {
    #[reduce(value = 1)]
    Red,
}

fn main() {}
