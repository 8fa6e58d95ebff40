//! `#[derive(ViewOf)]`: a checked view twin.
//!
//! On the view struct (or enum) `V` with `#[view_of(O)]` it writes, inside a
//! `const _: () = { … };`:
//!
//! - a never-called `fn(O)` that builds an `O` (each variant of an enum)
//!   from `V`'s field names, so a field missing on either side is a compile
//!   error, matches `O` without a wildcard (an owned variant the view lacks is
//!   an error), and asserts that each owned field has the view field's type
//!   with every `SharedArray<A, D>` replaced by `ndarray::Array<A, D>`
//!   (`#[view_of(owned = T)]`: has type `T`; `#[view_of(view)]`: is viewed by
//!   the field's type);
//! - `impl ViewOf<O> for V`, whose run-time check compares the order of the
//!   fields (and variants) that serde's derived `Deserialize` of each type
//!   declares, once, and runs the checks of `#[view_of(view)]` fields;
//! - `IntoArg<V>` for `ObjectRef<O>` and `&ObjectRef<O>`, whose argument fails
//!   with the check's error.

use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, GenericArgument, Ident, Member, Path, PathArguments, Type, TypePath};

/// How a view field relates to the owned field of the same name.
enum FieldKind {
    /// The owned field's type is the view field's with arrays for
    /// `SharedArray`s.
    Mirror,
    /// `#[view_of(view)]`: the view field's type is a `ViewOf` the owned one.
    View,
    /// `#[view_of(owned = T)]`: the owned field is a `T`, read the view field's
    /// own way (unchecked).
    Owned(Box<Type>),
}

struct Field {
    member: Member,
    ty: Type,
    kind: FieldKind,
}

/// A struct, or one variant of an enum.
struct Shape {
    /// The path of the owned struct or variant, without generic arguments.
    path: TokenStream2,
    fields: Vec<Field>,
}

pub fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let owned = container_attr(&input)?;
    let Type::Path(TypePath { qself: None, path: owned_path }) = &owned else {
        return Err(syn::Error::new_spanned(&owned, "`#[view_of(…)]` names the owned type: a struct or enum path"));
    };
    let bare = bare_path(owned_path);
    let shapes: Vec<Shape> = match &input.data {
        Data::Struct(s) => vec![Shape { path: quote!(#bare), fields: fields(&s.fields)? }],
        Data::Enum(e) => e
            .variants
            .iter()
            .map(|v| {
                if let Some(attr) = v.attrs.iter().find(|a| a.path().is_ident("view_of")) {
                    return Err(syn::Error::new_spanned(attr, "`#[view_of]` goes on the enum or on fields"));
                }
                let variant = &v.ident;
                Ok(Shape { path: quote!(#bare::#variant), fields: fields(&v.fields)? })
            })
            .collect::<syn::Result<_>>()?,
        Data::Union(u) => {
            return Err(syn::Error::new_spanned(u.union_token, "a view twin is a struct or an enum, not a union"));
        }
    };
    let is_enum = matches!(input.data, Data::Enum(_));

    let shoal = quote!(::shoal);
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let view = quote!(#name #ty_generics);
    let generic = !input.generics.params.is_empty();
    let mut where_clause = where_clause.cloned().unwrap_or_else(|| syn::parse_quote!(where));
    if generic {
        where_clause.predicates.push(syn::parse_quote!(#name #ty_generics: #shoal::Value));
        where_clause.predicates.push(syn::parse_quote!(#owned: #shoal::Value));
    }

    // Compile time. A struct expression per struct or variant names every
    // field, so a field missing on either side is an error (a pattern would
    // say that too, but as "inaccessible fields"); the `match` without a
    // wildcard rejects an owned variant the view lacks; and each binding's
    // type is asserted.
    let owned_var = Ident::new("__shoal_owned", Span::mixed_site());
    let constructions = shapes.iter().map(|shape| {
        let path = &shape.path;
        let members = shape.fields.iter().map(|f| &f.member);
        quote!(let _ = || -> #owned { #path { #(#members: loop {}),* } };)
    });
    let arms = shapes.iter().map(|shape| {
        let path = &shape.path;
        let members = shape.fields.iter().map(|f| &f.member);
        let bindings: Vec<Ident> = (0..shape.fields.len()).map(|i| format_ident!("__shoal_f{}", i)).collect();
        let checks = shape.fields.iter().zip(&bindings).map(|(f, binding)| {
            let span = f.ty.span();
            match &f.kind {
                FieldKind::Mirror => {
                    let expected = owned_type(&f.ty);
                    quote_spanned!(span=> #shoal::__private::same_type::<_, #expected>(&#binding);)
                }
                FieldKind::Owned(t) => {
                    let span = t.span();
                    quote_spanned!(span=> #shoal::__private::same_type::<_, #t>(&#binding);)
                }
                FieldKind::View => {
                    let ty = &f.ty;
                    quote_spanned!(span=> #shoal::__private::viewed_by::<#ty, _>(&#binding);)
                }
            }
        });
        quote!(#path { #(#members: #bindings,)* .. } => { #(#checks)* })
    });
    let fields_check = quote! {
        #[allow(dead_code, unused_variables, unreachable_code, clippy::all)]
        fn __shoal_view_of_fields #impl_generics (#owned_var: #owned) #where_clause {
            #(#constructions)*
            match #owned_var { #(#arms)* }
        }
    };

    // Run time: the order, then every nested twin.
    let (owned, shoal) = (&owned, &shoal);
    let nested = shapes.iter().flat_map(|shape| {
        let path = &shape.path;
        shape.fields.iter().filter(|f| matches!(f.kind, FieldKind::View)).map(move |f| {
            let (ty, member) = (&f.ty, &f.member);
            let pick = if is_enum {
                quote! {
                    match __o {
                        #path { #member: __x, .. } => __x,
                        #[allow(unreachable_patterns)]
                        _ => ::core::unreachable!(),
                    }
                }
            } else {
                quote!({ let #path { #member: __x, .. } = __o; __x })
            };
            quote!(#shoal::__private::check_field::<#ty, #owned, _>(|__o: &#owned| #pick)?;)
        })
    });
    let check = quote! {
        #shoal::__private::check_order::<#owned, Self>()?;
        #(#nested)*
        ::core::result::Result::Ok(())
    };
    let check_body = if generic {
        // A static in a generic function is shared by every instance: check
        // each time (a probe call per type and a comparison of two lists).
        quote!((|| -> #shoal::Result<()> { #check })())
    } else {
        quote! {
            static CHECKED: ::std::sync::OnceLock<#shoal::Result<()>> = ::std::sync::OnceLock::new();
            ::core::clone::Clone::clone(CHECKED.get_or_init(|| -> #shoal::Result<()> { #check }))
        }
    };

    Ok(quote! {
        #[doc(hidden)]
        const _: () = {
            #fields_check

            #[automatically_derived]
            impl #impl_generics #shoal::ViewOf<#owned> for #view #where_clause {
                fn __check_twin() -> #shoal::Result<()> {
                    #check_body
                }
            }

            #[automatically_derived]
            impl #impl_generics #shoal::IntoArg<#view> for #shoal::ObjectRef<#owned> #where_clause {
                fn into_arg(self, _: #shoal::__private::Checked<#view>) -> #shoal::Arg {
                    #shoal::__private::view_arg::<#view, #owned>(&self)
                }
            }

            #[automatically_derived]
            impl #impl_generics #shoal::IntoArg<#view> for &#shoal::ObjectRef<#owned> #where_clause {
                fn into_arg(self, _: #shoal::__private::Checked<#view>) -> #shoal::Arg {
                    #shoal::__private::view_arg::<#view, #owned>(self)
                }
            }
        };
    })
}

/// The owned type named by the one `#[view_of(Owned)]` on the view.
fn container_attr(input: &DeriveInput) -> syn::Result<Type> {
    let mut found: Option<Type> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("view_of")) {
        if found.is_some() {
            return Err(syn::Error::new_spanned(attr, "a view twin has one `#[view_of(OwnedType)]`"));
        }
        found = Some(attr.parse_args::<Type>()?);
    }
    found.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "`#[derive(ViewOf)]` needs the owned type it views: add `#[view_of(OwnedType)]`",
        )
    })
}

fn fields(fields: &Fields) -> syn::Result<Vec<Field>> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let member = match &f.ident {
                Some(ident) => Member::Named(ident.clone()),
                None => Member::Unnamed(syn::Index { index: i as u32, span: f.ty.span() }),
            };
            Ok(Field { member, ty: f.ty.clone(), kind: field_attr(&f.attrs)? })
        })
        .collect()
}

/// A field's `#[view_of(view)]` or `#[view_of(owned = Type)]`, at most one.
fn field_attr(attrs: &[Attribute]) -> syn::Result<FieldKind> {
    let mut kind = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("view_of")) {
        attr.parse_nested_meta(|meta| {
            let this = if meta.path.is_ident("view") {
                FieldKind::View
            } else if meta.path.is_ident("owned") {
                FieldKind::Owned(Box::new(meta.value()?.parse()?))
            } else {
                return Err(meta.error("expected `view` or `owned = Type`"));
            };
            if kind.replace(this).is_some() {
                return Err(meta.error("a field takes one of `view` and `owned = Type`"));
            }
            Ok(())
        })?;
    }
    Ok(kind.unwrap_or(FieldKind::Mirror))
}

/// `path` without generic arguments, for patterns (`a::Frame<T>` → `a::Frame`).
fn bare_path(path: &Path) -> Path {
    let mut bare = path.clone();
    for segment in &mut bare.segments {
        segment.arguments = PathArguments::None;
    }
    bare
}

/// The owned type a view type reads: every `SharedArray<A, D>` in it (by its
/// last path segment, anywhere inside) becomes `::shoal::ndarray::Array<A, D>`.
fn owned_type(ty: &Type) -> Type {
    let mut ty = ty.clone();
    replace_shared(&mut ty);
    ty
}

fn replace_shared(ty: &mut Type) {
    match ty {
        Type::Path(tp) => {
            if let Some(qself) = &mut tp.qself {
                replace_shared(&mut qself.ty);
            }
            let is_shared = tp.qself.is_none()
                && tp.path.segments.last().is_some_and(|s| {
                    s.ident == "SharedArray" && matches!(s.arguments, PathArguments::AngleBracketed(_))
                });
            if is_shared {
                let span = ty.span();
                let Type::Path(tp) = &*ty else { unreachable!() };
                let args = &tp.path.segments.last().expect("checked").arguments;
                *ty = syn::parse_quote_spanned!(span=> ::shoal::ndarray::Array #args);
                return;
            }
            for segment in &mut tp.path.segments {
                if let PathArguments::AngleBracketed(args) = &mut segment.arguments {
                    for arg in &mut args.args {
                        match arg {
                            GenericArgument::Type(t) => replace_shared(t),
                            GenericArgument::AssocType(a) => replace_shared(&mut a.ty),
                            _ => {}
                        }
                    }
                }
            }
        }
        Type::Tuple(t) => t.elems.iter_mut().for_each(replace_shared),
        Type::Array(a) => replace_shared(&mut a.elem),
        Type::Slice(s) => replace_shared(&mut s.elem),
        Type::Reference(r) => replace_shared(&mut r.elem),
        Type::Ptr(p) => replace_shared(&mut p.elem),
        Type::Paren(p) => replace_shared(&mut p.elem),
        Type::Group(g) => replace_shared(&mut g.elem),
        _ => {}
    }
}
