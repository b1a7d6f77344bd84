//! Rules across attributes: each broken rule is an error at the tokens the
//! user wrote, saying how to fix it.

use crate::ast::{Body, Input, Shape, Style};
use crate::attr::Errors;

pub fn check(input: &Input<'_>, errors: &mut Errors) {
    let c = &input.attrs;
    if let Some(name) = &c.name {
        if name.value.is_empty() || name.value.split('.').any(|p| p.is_empty()) {
            errors.at(
                name.span,
                "`name` must be a Python qualified name such as \"Point\" or \"Outer.Inner\"",
            );
        }
    }
    if let Some(module) = &c.module {
        if module.value.is_empty() || module.value.contains("::") {
            errors.at(
                module.span,
                "`module` must be a dotted Python module path such as \"geometry.shapes\"",
            );
        }
    }
    match &input.body {
        Body::Struct(shape) => {
            if let Some(span) = c.python_enum {
                errors.at(
                    span,
                    "`python_enum` applies to enums only: remove it, or make this type an enum",
                );
            }
            if let Some(span) = c.flat_variants {
                errors.at(span, "`flat_variants` applies to enums only: remove it");
            }
            if let Some(span) = c.state {
                if shape.style == Style::Tuple {
                    errors.at(
                        span,
                        "`state` writes fields by name in the instance __dict__, so it needs named fields: use a struct with named fields, or remove `state`",
                    );
                }
            }
            if let Some(span) = c.default {
                if c.state.is_none() {
                    errors.at(span, "container `default` applies with `state` only (it fills fields missing from the state): add `state`, or remove `default`");
                }
            }
            fields(shape, c.state.is_some(), errors);
        }
        Body::Enum(variants) => {
            if let Some(span) = c.state {
                errors.at(span, "`state` is not supported on enums: remove it");
            }
            if let Some(span) = c.default {
                errors.at(
                    span,
                    "container `default` is not supported on enums: remove it",
                );
            }
            if variants.is_empty() {
                errors.at(input.span, "#[derive(Reduce)] needs at least one variant: an empty enum has no value to write");
            }
            for v in variants {
                if c.python_enum.is_some() {
                    if v.shape.style != Style::Unit {
                        errors.at(
                            v.ident.span(),
                            "a `python_enum` variant must be a unit variant, as Python Enum members are values: remove its fields",
                        );
                    }
                    if let Some(r) = &v.attrs.rename {
                        errors.at(r.span, "`rename` does not apply to `python_enum` variants, which are written by value: use `value = ...`");
                    }
                } else if let Some(value) = &v.attrs.value {
                    errors.at(value.span, "`value` applies to `python_enum` variants only: add #[reduce(python_enum)] to the enum, or remove `value`");
                }
                fields(&v.shape, false, errors);
            }
        }
    }
}

fn fields(shape: &Shape<'_>, state: bool, errors: &mut Errors) {
    for f in &shape.fields {
        let a = &f.attrs;
        let how = [
            a.with.as_ref().map(|w| ("with", w.span)),
            a.registry.map(|s| ("registry", s)),
            a.bytes.map(|s| ("bytes", s)),
        ];
        let set: Vec<_> = how.iter().flatten().collect();
        if set.len() > 1 {
            errors.at(
                set[1].1,
                format!(
                    "`{}` and `{}` both say how to write this field: keep one",
                    set[0].0, set[1].0
                ),
            );
        }
        if let Some(skip) = a.skip {
            if let Some((what, _)) = set.first() {
                errors.at(skip, format!("a skipped field is not written, so `{what}` has no effect: remove one of them"));
            }
        }
        if let Some(d) = &a.default {
            if a.skip.is_none() && !state {
                errors.at(
                    d.span,
                    "`default` applies to skipped fields, or to fields of a `state` type missing from the state: add `skip`, or #[reduce(state)] on the type",
                );
            }
        }
        if let Some(r) = &a.rename {
            if r.value.is_empty() {
                errors.at(r.span, "`rename` needs a non-empty name");
            }
        }
    }
}
