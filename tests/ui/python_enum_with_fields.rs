use reduce::Reduce;

#[derive(Reduce)]
#[reduce(python_enum)]
enum Color {
    Red,
    Custom(u8, u8, u8),
}

fn main() {}
