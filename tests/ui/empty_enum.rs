use reduce::Reduce;

#[derive(Reduce)]
enum Never {}

fn main() {}
