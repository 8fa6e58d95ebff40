//! `#[shoal::remote]`, which turns a plain function into a remote function,
//! `#[shoal::actor]`, which makes a type's impl block an actor, and
//! `#[derive(shoal::ViewOf)]`, which declares a checked view twin.
//!
//! This crate owns only the code generation; everything the generated code
//! calls lives in `shoal::__private`. Use it through `shoal::remote` and
//! `shoal::ViewOf`, where it is documented.

mod actor;
mod view_of;

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::{DeriveInput, FnArg, Ident, ItemFn, ItemImpl, LitInt, Pat, ReturnType, Token, Type, parse_macro_input};

struct RemoteArgs {
    num_returns: usize,
    streaming: bool,
}

impl Parse for RemoteArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut num_returns = 1;
        let mut streaming = false;
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            if key == "streaming" {
                streaming = true;
                if num_returns != 1 {
                    return Err(syn::Error::new(key.span(), "a streaming function has no `num_returns`"));
                }
            } else if key == "num_returns" {
                input.parse::<Token![=]>()?;
                if streaming {
                    return Err(syn::Error::new(key.span(), "a streaming function has no `num_returns`"));
                }
                let lit: LitInt = input.parse()?;
                num_returns = lit.base10_parse()?;
                if num_returns == 0 {
                    return Err(syn::Error::new(lit.span(), "num_returns must be at least 1"));
                }
            } else {
                return Err(syn::Error::new(key.span(), "unknown option; expected `num_returns = N` or `streaming`"));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(RemoteArgs { num_returns, streaming })
    }
}

/// Make a function remote: keeps it callable locally and adds a module of the
/// same name with `remote(args…)` and `options()`. Options:
/// `num_returns = N` (a function returning an N-tuple gives N refs) and
/// `streaming` (a function returning `impl Iterator<Item = T>` gives a
/// `shoal::ObjectRefStream<T>`). See the `shoal` crate docs.
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(attr as RemoteArgs);
    let func = parse_macro_input!(item as ItemFn);
    match expand(args, func) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Make a type an actor: on its impl block, whose `new` is the constructor.
/// Adds `TYPE::remote(args…)`, `TYPE::options()` and the handle's methods.
/// See `shoal::ActorHandle`.
#[proc_macro_attribute]
pub fn actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = TokenStream2::from(attr);
        return syn::Error::new_spanned(
            attr,
            "#[shoal::actor] takes no options; give them at creation with `TYPE::options()`",
        )
        .to_compile_error()
        .into();
    }
    let block = parse_macro_input!(item as ItemImpl);
    match actor::expand(block) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Options of one method inside a `#[shoal::actor]` impl block:
/// `#[shoal::method(num_returns = 2)]` on a method returning a pair,
/// `#[shoal::method(streaming)]` on one returning `impl Iterator<Item = T>`.
#[proc_macro_attribute]
pub fn method(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    let error = syn::Error::new_spanned(&item, "#[shoal::method] marks a method inside a #[shoal::actor] impl block")
        .to_compile_error();
    quote!(#error #item).into()
}

/// Use it as `shoal::ViewOf`: the generated code names the `shoal` crate.
#[proc_macro_derive(ViewOf, attributes(view_of))]
pub fn derive_view_of(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as DeriveInput);
    match view_of::expand(input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Refuse what a remote function or method cannot be: generic, async.
pub(crate) fn check_signature(sig: &syn::Signature, what: &str) -> syn::Result<()> {
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(&sig.generics, format!("{what} cannot be generic")));
    }
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new_spanned(asyncness, format!("{what} cannot be async")));
    }
    Ok(())
}

/// The typed arguments of a signature (after its receiver, if any): the
/// names generated code gives them, and their types.
pub(crate) fn arguments<'a>(
    inputs: impl Iterator<Item = &'a FnArg>,
    what: &str,
) -> syn::Result<(Vec<Ident>, Vec<Type>)> {
    let mut arg_names = Vec::new();
    let mut arg_types = Vec::new();
    for (i, input) in inputs.enumerate() {
        let FnArg::Typed(pat_type) = input else {
            return Err(syn::Error::new_spanned(input, format!("{what} cannot take self")));
        };
        if let Type::Reference(r) = &*pat_type.ty {
            return Err(syn::Error::new_spanned(
                r,
                format!("{what} arguments must be owned values (use SharedArray for zero-copy arrays)"),
            ));
        }
        if let Type::ImplTrait(t) = &*pat_type.ty {
            return Err(syn::Error::new_spanned(t, format!("{what} arguments cannot be `impl Trait`")));
        }
        let ident = match &*pat_type.pat {
            Pat::Ident(p) => format_ident!("{}", p.ident.to_string().trim_start_matches('_')),
            _ => format_ident!("arg{}", i),
        };
        arg_names.push(format_ident!("__{}", ident));
        arg_types.push((*pat_type.ty).clone());
    }
    Ok((arg_names, arg_types))
}

/// A local of generated code: its span's hygiene keeps it apart from every
/// name the user wrote (an argument named `args` or `state` included).
pub(crate) fn local(name: &str) -> Ident {
    Ident::new(name, proc_macro2::Span::mixed_site())
}

/// The function measuring a return value of type `ty`, spanned at that
/// type: a type that is no value is one error, there (see
/// `shoal::__private::IsValue`).
fn output_of(ty: &Type) -> TokenStream2 {
    quote::quote_spanned!(syn::spanned::Spanned::span(ty)=> <#ty as ::shoal::__private::IsValue>::OUTPUT)
}

/// What a call of a function returning `output` in `n` refs gives back:
/// the type of its refs, the expression building them from the local
/// `refs`, and the expression measuring the local `ret` into its outputs
/// (both [`local`]s).
pub(crate) fn returns(output: &ReturnType, n: usize) -> syn::Result<(TokenStream2, TokenStream2, TokenStream2)> {
    let unit: Type = syn::parse_quote!(());
    let ret_type = match output {
        ReturnType::Default => unit,
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let shoal = quote!(::shoal);
    let (refs, ret, it) = (local("refs"), local("ret"), local("it"));
    Ok(if n == 1 {
        (quote!(#shoal::ObjectRef<#ret_type>), quote!(#shoal::__private::typed(#refs.pop().expect("one output"))), {
            let output = output_of(&ret_type);
            quote!(::std::vec![#output(#ret)])
        })
    } else {
        let Type::Tuple(tuple) = &ret_type else {
            return Err(syn::Error::new_spanned(
                &ret_type,
                format!("num_returns = {n} needs a tuple return type of {n} elements"),
            ));
        };
        if tuple.elems.len() != n {
            return Err(syn::Error::new_spanned(
                &ret_type,
                format!("num_returns = {n} but the tuple has {} elements", tuple.elems.len()),
            ));
        }
        let elems: Vec<&Type> = tuple.elems.iter().collect();
        let parts: Vec<Ident> = (0..n).map(|i| local(&format!("r{i}"))).collect();
        (
            quote!((#(#shoal::ObjectRef<#elems>,)*)),
            quote!({ let mut #it = #refs.into_iter(); (#(#shoal::__private::typed::<#elems>(#it.next().expect("output")),)*) }),
            {
                let outputs = elems.iter().map(|ty| output_of(ty));
                quote!({ let (#(#parts,)*) = #ret; ::std::vec![#(#outputs(#parts)),*] })
            },
        )
    })
}

/// What a call of a streaming function (or method) returning `output`
/// gives back: the type of its stream, the expression building it from the
/// local `refs` (its one output, the stream's end), and the statement
/// feeding the local `ret`'s items, measured, to the local `sink` (all
/// [`local`]s). `output` must be `impl Iterator<Item = T>` (or
/// `IntoIterator`): `T` is named in the stream's type.
pub(crate) fn streams(output: &ReturnType) -> syn::Result<(TokenStream2, TokenStream2, TokenStream2)> {
    let wrong = |span: &dyn quote::ToTokens| {
        syn::Error::new_spanned(span, "a streaming function returns `impl Iterator<Item = T>`")
    };
    let ReturnType::Type(_, ty) = output else {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "a streaming function returns `impl Iterator<Item = T>`",
        ));
    };
    let Type::ImplTrait(bounds) = &**ty else { return Err(wrong(ty)) };
    let item = bounds
        .bounds
        .iter()
        .filter_map(|bound| match bound {
            syn::TypeParamBound::Trait(t) => t.path.segments.last(),
            _ => None,
        })
        .filter(|seg| seg.ident == "Iterator" || seg.ident == "IntoIterator")
        .find_map(|seg| match &seg.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                syn::GenericArgument::AssocType(assoc) if assoc.ident == "Item" => Some(assoc.ty.clone()),
                _ => None,
            }),
            _ => None,
        })
        .ok_or_else(|| wrong(ty))?;
    let (refs, ret, sink, it) = (local("refs"), local("ret"), local("sink"), local("it"));
    let output = output_of(&item);
    Ok((
        quote!(::shoal::ObjectRefStream<#item>),
        quote!(::shoal::__private::stream::<#item>(#refs.pop().expect("one output"))),
        quote! {
            for #it in #ret {
                if !#sink(#output(#it)) {
                    break;
                }
            }
        },
    ))
}

/// `fn #name()` returning, for each argument type, the check that it is a
/// value, spanned at that type (see `shoal::__private::IsValue`), and the
/// expressions `#path().i` that the encoding and decoding of argument `i`
/// use: the check is written once per argument, so a type that is no value
/// is one error.
pub(crate) fn checks(name: &Ident, path: TokenStream2, types: &[Type]) -> (TokenStream2, Vec<TokenStream2>) {
    let each = types.iter().map(
        |ty| quote::quote_spanned!(syn::spanned::Spanned::span(ty)=> <#ty as ::shoal::__private::IsValue>::CHECKED),
    );
    let function = quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        fn #name() -> (#(::shoal::__private::Checked<#types>,)*) {
            (#(#each,)*)
        }
    };
    let uses = (0..types.len()).map(syn::Index::from).map(|i| quote!(#path().#i)).collect();
    (function, uses)
}

/// FNV-1a of a token stream's text: stable across builds, so two binaries
/// agree on a function only if they were built from the same code for it.
pub(crate) fn source_hash(tokens: &TokenStream2) -> u64 {
    tokens
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn expand(args: RemoteArgs, func: ItemFn) -> syn::Result<TokenStream2> {
    let sig = &func.sig;
    check_signature(sig, "remote functions")?;
    let name = &sig.ident;
    let vis = &func.vis;
    let (arg_names, arg_types) = arguments(sig.inputs.iter(), "remote function")?;
    let (checks_fn, arg_checks) = checks(&format_ident!("__checks"), quote!(__checks), &arg_types);
    let n = args.num_returns;
    let streaming = args.streaming;
    let shoal = quote!(::shoal);
    let (args, ret, refs, sink) = (local("args"), local("ret"), local("refs"), local("sink"));
    // The worker's entry point, and what `remote` gives back.
    let (ref_type, returns_expr, invoke, invoke_fn) = if streaming {
        let (ref_type, returns_expr, feed) = streams(&sig.output)?;
        let invoke_fn = quote! {
            fn __invoke(
                #args: &mut #shoal::__private::ArgReader<'_>,
                #sink: &mut #shoal::__private::Sink<'_>,
            ) -> ::core::result::Result<(), #shoal::Error> {
                #( let #arg_names: #arg_types = #args.read_checked(#arg_checks)?; )*
                let #ret = super::#name(#(#arg_names),*);
                #feed
                ::core::result::Result::Ok(())
            }
        };
        (ref_type, returns_expr, quote!(Stream), invoke_fn)
    } else {
        let (ref_type, returns_expr, outputs_expr) = returns(&sig.output, n)?;
        let invoke_fn = quote! {
            fn __invoke(
                #args: &mut #shoal::__private::ArgReader<'_>,
            ) -> ::core::result::Result<::std::vec::Vec<#shoal::__private::Output>, #shoal::Error> {
                #( let #arg_names: #arg_types = #args.read_checked(#arg_checks)?; )*
                let #ret = super::#name(#(#arg_names),*);
                ::core::result::Result::Ok(#outputs_expr)
            }
        };
        (ref_type, returns_expr, quote!(Function), invoke_fn)
    };
    let default_options =
        if streaming { quote!(#shoal::__private::stream_options()) } else { quote!(#shoal::TaskOptions::default()) };
    let backpressure = streaming.then(|| {
        quote! {
            /// Pause the producer while this many items are not taken (default: never).
            pub fn backpressure(self, items: u32) -> Self {
                Options(self.0.backpressure(items))
            }
        }
    });
    let doc_remote = if streaming {
        format!("Submit `{name}` as a streaming task; returns at once with the stream of its items' refs.")
    } else {
        format!("Submit `{name}` as a task; returns at once with a reference to its eventual result.")
    };
    let doc_mod = format!("Remote-call support for [`fn@{name}`] (generated by `#[shoal::remote]`).");
    let registration = format_ident!("__SHOAL_REGISTRATION");
    let source_hash = source_hash(&quote!(#func));
    let num_returns = proc_macro2::Literal::usize_unsuffixed(n);

    Ok(quote! {
        #func

        #[doc = #doc_mod]
        #[allow(unused_imports, non_snake_case, clippy::all)]
        #vis mod #name {
            use super::*;

            /// The stable name this function is registered under.
            pub const NAME: &str = ::core::concat!(::core::module_path!());

            #[#shoal::__private::linkme::distributed_slice(#shoal::__private::REMOTE_FUNCTIONS)]
            #[linkme(crate = #shoal::__private::linkme)]
            static #registration: #shoal::__private::RemoteFunction =
                #shoal::__private::RemoteFunction {
                    name: NAME,
                    source_hash: #source_hash,
                    invoke: #shoal::__private::Invoke::#invoke(__invoke),
                };

            #checks_fn

            #invoke_fn

            #[doc = #doc_remote]
            pub fn remote(#(#arg_names: impl #shoal::IntoArg<#arg_types>),*) -> #ref_type {
                options().remote(#(#arg_names),*)
            }

            /// Per-call options (`max_retries`, `retry_panics`, `num_cpus`, `resource`), then `.remote(args…)`.
            pub fn options() -> Options {
                Options(#default_options)
            }

            /// Options for one call of this remote function.
            #[derive(Debug, Clone)]
            pub struct Options(#shoal::TaskOptions);

            impl Options {
                /// How many times the task is retried if its worker process dies.
                pub fn max_retries(self, retries: u32) -> Self {
                    Options(self.0.max_retries(retries))
                }

                /// Whether a panic is retried too, within `max_retries`.
                pub fn retry_panics(self, retry: bool) -> Self {
                    Options(self.0.retry_panics(retry))
                }

                /// CPUs the task occupies while it runs.
                pub fn num_cpus(self, cpus: u32) -> Self {
                    Options(self.0.num_cpus(cpus))
                }

                /// An amount of a custom resource the task holds while it runs.
                pub fn resource(self, name: impl ::core::convert::Into<::std::string::String>, amount: f64) -> Self {
                    Options(self.0.resource(name, amount))
                }

                #backpressure

                #[doc = #doc_remote]
                pub fn remote(self, #(#arg_names: impl #shoal::IntoArg<#arg_types>),*) -> #ref_type {
                    #shoal::__private::start_on_first_use(NAME);
                    let #args = ::std::vec![#(#shoal::IntoArg::<#arg_types>::into_arg(#arg_names, #arg_checks)),*];
                    #[allow(unused_mut)]
                    let mut #refs = #shoal::__private::submit(NAME, &self.0, #args, #num_returns);
                    #returns_expr
                }
            }
        }
    })
}
