//! `#[derive(Reduce)]`: a constructor-plus-args reduction for a type, its
//! reading side, and its registration, for the `reduce` pickle library.
//! Use it through `reduce` (`reduce::Reduce`), which documents it.
//!
//! The pipeline: `ast` parses the input once, `attr` reads the
//! `#[reduce(...)]` attributes, `valid` checks the rules across them, and
//! `expand` writes the code. Every mistake is collected and reported at
//! once, each at the tokens the user wrote.

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `reduce::Reduce` and `reduce::Construct`, and registers the type.
#[proc_macro_derive(Reduce, attributes(reduce))]
pub fn derive_reduce(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let mut errors = attr::Errors::default();
    let parsed = ast::parse(&input, &mut errors);
    if let Some(parsed) = &parsed {
        valid::check(parsed, &mut errors);
    }
    match (errors.finish(), parsed) {
        (Ok(()), Some(parsed)) => expand::derive(&parsed).into(),
        (Err(e), _) => e.to_compile_error().into(),
        (Ok(()), None) => TokenStream::new(),
    }
}
