//! Checks the canonical-ABI layouts that the Go SDK writes by hand against the WIT.
//!
//! `plugins/sdk-go/abi_wasm.go` lowers and lifts the `weir:plugin` world's types with
//! offsets, sizes and alignments it keeps in one `const` block. Nothing in a Go build
//! checks them (a wrong offset still builds a valid component that corrupts every
//! output), so this test computes each one from `wit/plugin.wit` with `wit-parser`'s
//! `SizeAlign` (wasm32) and compares. It runs natively with `cargo test`: no Go
//! toolchain needed. Test-only; the crate has no code of its own.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use wit_parser::{Int, Resolve, SizeAlign, Type, TypeDefKind, TypeId, WorldItem, WorldKey};

    const GO_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../abi_wasm.go");
    const WIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../wit");

    /// The comment above the checked `const` block names this crate.
    const MARKER: &str = "plugins/sdk-go/abicheck";

    /// Every layout the Go glue relies on, by the name of its Go constant, as the WIT
    /// and the canonical ABI (wasm32) give it.
    fn wit_layouts() -> Vec<(&'static str, usize)> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve.push_dir(WIT_DIR).expect("wit/ parses");
        let world = resolve
            .select_world(&[package], Some("plugin"))
            .expect("wit/ has the world `plugin`");
        let mut sizes = SizeAlign::default();
        sizes.fill(&resolve);

        let types = resolve.packages[package].interfaces["types"];
        let named = |name: &str| resolve.interfaces[types].types[name];
        let kind = |ty: &Type| match ty {
            Type::Id(id) => &resolve.types[*id].kind,
            other => panic!("expected a defined type, got {other:?}"),
        };
        let export = |name: &str| match &resolve.worlds[world].exports[&WorldKey::Name(name.into())]
        {
            WorldItem::Function(f) => f,
            _ => panic!("`{name}` is not a function"),
        };
        let size = |ty: &Type| sizes.size(ty).size_wasm32();
        let align = |ty: &Type| sizes.align(ty).align_wasm32();
        // A record's (or tuple's) field offsets, by field name (a tuple's: 0, 1, ...).
        let offsets = |id: TypeId| -> BTreeMap<String, usize> {
            let fields: Vec<(String, Type)> = match &resolve.types[id].kind {
                TypeDefKind::Record(r) => r.fields.iter().map(|f| (f.name.clone(), f.ty)).collect(),
                TypeDefKind::Tuple(t) => t
                    .types
                    .iter()
                    .enumerate()
                    .map(|(i, ty)| (i.to_string(), *ty))
                    .collect(),
                other => panic!("expected a record or a tuple, got {other:?}"),
            };
            let at = sizes.field_offsets(fields.iter().map(|(_, ty)| ty));
            fields
                .iter()
                .zip(at)
                .map(|((name, _), (offset, _))| (name.clone(), offset.size_wasm32()))
                .collect()
        };
        // Where an option's or a result's payload starts.
        let payload = |ty: &Type| match kind(ty) {
            TypeDefKind::Option(t) => sizes.payload_offset(Int::U8, [Some(t)]).size_wasm32(),
            TypeDefKind::Result(r) => sizes
                .payload_offset(Int::U8, [r.ok.as_ref(), r.err.as_ref()])
                .size_wasm32(),
            other => panic!("expected an option or a result, got {other:?}"),
        };

        let header = named("header");
        let output = named("output");
        let header_at = offsets(header);
        let output_at = offsets(output);
        let output_fields = match &resolve.types[output].kind {
            TypeDefKind::Record(r) => &r.fields,
            _ => unreachable!("offsets() took it as a record"),
        };
        let field_type = |name: &str| {
            output_fields
                .iter()
                .find(|f| f.name == name)
                .expect("an output field")
                .ty
        };
        let (key, value) = (field_type("key"), field_type("value"));
        // One constant serves both (the glue's storeOption): they must stay one type.
        assert_eq!(
            payload(&key),
            payload(&value),
            "output key and value lay out alike"
        );

        let config = match kind(&export("init").params[0].ty) {
            TypeDefKind::List(Type::Id(entry)) => *entry,
            other => panic!("init takes a list of tuples, got {other:?}"),
        };
        let config_at = offsets(config);
        let init_result = export("init").result.expect("init returns a result");
        let handle_result = export("handle-event")
            .result
            .expect("handle-event returns a result");

        let failure = match &resolve.types[named("failure")].kind {
            TypeDefKind::Variant(v) => v,
            other => panic!("failure is a variant, got {other:?}"),
        };
        let case = |name: &str| {
            failure
                .cases
                .iter()
                .position(|c| c.name == name)
                .expect("a failure case")
        };
        let failure_payload = sizes
            .payload_offset(failure.tag(), failure.cases.iter().map(|c| c.ty.as_ref()))
            .size_wasm32();

        vec![
            ("headerSize", size(&Type::Id(header))),
            ("headerAlign", align(&Type::Id(header))),
            ("headerKeyOffset", header_at["key"]),
            ("headerValueOffset", header_at["value"]),
            ("configEntrySize", size(&Type::Id(config))),
            ("configEntryKeyOffset", config_at["0"]),
            ("configEntryValueOffset", config_at["1"]),
            ("optionPayloadOffset", payload(&key)),
            ("outputSize", size(&Type::Id(output))),
            ("outputAlign", align(&Type::Id(output))),
            ("outputToOffset", output_at["to"]),
            ("outputKeyOffset", output_at["key"]),
            ("outputValueOffset", output_at["value"]),
            ("outputHeadersOffset", output_at["headers"]),
            ("failureInvalid", case("invalid")),
            ("failureTransient", case("transient")),
            ("failurePayloadOffset", failure_payload),
            ("handleResultSize", size(&handle_result)),
            ("handleResultAlign", align(&handle_result)),
            ("handleResultPayloadOffset", payload(&handle_result)),
            ("initResultSize", size(&init_result)),
            ("initResultAlign", align(&init_result)),
            ("initResultPayloadOffset", payload(&init_result)),
        ]
    }

    /// The constants of the `const (...)` block after the comment naming this crate:
    /// `name = <decimal>` lines, each with an optional `//` comment.
    fn go_constants(source: &str) -> Result<BTreeMap<String, usize>, String> {
        let mut lines = source.lines().enumerate();
        lines
            .by_ref()
            .find(|(_, l)| l.trim_start().starts_with("//") && l.contains(MARKER))
            .ok_or(format!(
                "abi_wasm.go: no comment naming {MARKER} above the layout constants"
            ))?;
        lines
            .by_ref()
            .find(|(_, l)| l.trim() == "const (")
            .ok_or("abi_wasm.go: no `const (` block after the comment naming abicheck")?;
        let mut constants = BTreeMap::new();
        for (i, line) in lines {
            let code = line.split("//").next().unwrap_or_default().trim();
            if code == ")" {
                return Ok(constants);
            }
            if code.is_empty() {
                continue;
            }
            let parsed = code
                .split_once('=')
                .and_then(|(name, value)| Some((name.trim(), value.trim().parse::<usize>().ok()?)));
            let Some((name, value)) = parsed else {
                return Err(format!(
                    "abi_wasm.go:{}: `{code}`: the checked block holds `name = <decimal>` lines only",
                    i + 1
                ));
            };
            if constants.insert(name.to_owned(), value).is_some() {
                return Err(format!("abi_wasm.go:{}: {name} twice", i + 1));
            }
        }
        Err("abi_wasm.go: the checked `const (` block has no closing `)`".into())
    }

    /// One line per constant that is wrong, missing or unknown.
    fn mismatches(go: &BTreeMap<String, usize>, wit: &[(&str, usize)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, want) in wit {
            match go.get(*name) {
                None => problems.push(format!(
                    "{name}: missing from abi_wasm.go (wit/plugin.wit says {want})"
                )),
                Some(got) if got != want => problems.push(format!(
                    "{name}: abi_wasm.go says {got}, wit/plugin.wit says {want}"
                )),
                Some(_) => {}
            }
        }
        for name in go.keys() {
            if !wit.iter().any(|(n, _)| n == name) {
                problems.push(format!(
                    "{name}: in abi_wasm.go's checked block, but abicheck computes no layout for it (add it to wit_layouts)"
                ));
            }
        }
        problems
    }

    fn go_source() -> String {
        std::fs::read_to_string(GO_FILE).expect("read plugins/sdk-go/abi_wasm.go")
    }

    #[test]
    fn the_go_sdk_lays_out_the_world_as_the_wit_does() {
        let go = go_constants(&go_source()).unwrap_or_else(|e| panic!("{e}"));
        let problems = mismatches(&go, &wit_layouts());
        assert!(
            problems.is_empty(),
            "the Go SDK's ABI constants disagree with the WIT:\n{}",
            problems.join("\n")
        );
    }

    /// A Go file whose checked block holds `layouts`, as gofmt lays one out.
    fn go_file(layouts: &[(&str, usize)]) -> String {
        let mut source = format!("package weir\n\n// Checked by {MARKER}.\nconst (\n");
        for (name, value) in layouts {
            source += &format!("\t{name:<25} = {value} // why\n\n");
        }
        source + ")\n\nconst other = 1\n"
    }

    #[test]
    fn a_wrong_constant_is_named_with_both_values() {
        let wit = wit_layouts();
        let mut layouts = wit.clone();
        let right = layouts
            .iter_mut()
            .find(|(n, _)| *n == "outputValueOffset")
            .map(|(_, v)| std::mem::replace(v, *v + 4))
            .expect("a layout");
        let go = go_constants(&go_file(&layouts)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            mismatches(&go, &wit),
            [format!(
                "outputValueOffset: abi_wasm.go says {}, wit/plugin.wit says {right}",
                right + 4
            )]
        );
    }

    #[test]
    fn a_missing_or_unknown_constant_fails_the_check() {
        let wit = wit_layouts();
        let mut layouts = wit.clone();
        layouts.retain(|(n, _)| *n != "headerAlign");
        layouts.push(("headerSlots", 4));
        let go = go_constants(&go_file(&layouts)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            mismatches(&go, &wit),
            [
                "headerAlign: missing from abi_wasm.go (wit/plugin.wit says 4)",
                "headerSlots: in abi_wasm.go's checked block, but abicheck computes no layout for it (add it to wit_layouts)",
            ]
        );
    }

    #[test]
    fn a_constant_that_is_not_a_number_is_refused() {
        let source = go_file(&wit_layouts()).replacen("= 16 ", "= 4 * 4 ", 1);
        let error = go_constants(&source).expect_err("an expression");
        assert!(
            error.contains("`headerSize                = 4 * 4`"),
            "{error}"
        );
    }
}
