use reduce::Reduce;

const ONE: i64 = 1;

#[derive(Reduce)]
#[reduce(python_enum)]
enum Color {
    #[reduce(value = ONE)]
    Red,
}

fn main() {}
