//! Checks the canonical ABI that the Go SDK writes by hand against the WIT.
//!
//! `plugins/sdk-go/abi_wasm.go` lowers and lifts the `weir:plugin` worlds' types with
//! offsets, sizes and alignments it keeps in one `const` block. Nothing in a Go build
//! checks them (a wrong offset still builds a valid component that corrupts every
//! output), so this test computes each one from `wit/plugin.wit` with `wit-parser`'s
//! `SizeAlign` (wasm32) and compares. It also compares the core signature of every
//! `//go:wasmimport` and `//go:wasmexport` function with the one the canonical ABI
//! gives the WIT function (flattened parameters, return pointer), and the import
//! module names with the interfaces' ids; `wasm-tools component new` checks those
//! too, but only when a plugin that uses them is built. It runs natively with
//! `cargo test`: no Go toolchain needed. Test-only; the crate has no code of its own.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use wit_parser::abi::{AbiVariant, WasmType};
    use wit_parser::{
        Function, Int, Resolve, SizeAlign, Type, TypeDefKind, TypeId, WorldItem, WorldKey,
    };

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
        let stateful = resolve
            .select_world(&[package], Some("stateful-plugin"))
            .expect("wit/ has the world `stateful-plugin`");
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

        // handle-timer returns what handle-event does: the glue lowers both alike.
        let stateful_export =
            |name: &str| match &resolve.worlds[stateful].exports[&WorldKey::Name(name.into())] {
                WorldItem::Function(f) => f.result,
                _ => panic!("`{name}` is not a function"),
            };
        assert_eq!(
            stateful_export("handle-timer"),
            stateful_export("handle-event"),
            "handle-timer and handle-event return the same type"
        );

        // The return areas of the state and timers imports.
        let result_of = |interface: &str, name: &str| {
            let id = resolve.packages[package].interfaces[interface];
            resolve.interfaces[id].functions[name]
                .result
                .unwrap_or_else(|| panic!("{interface}.{name} returns something"))
        };
        let get = result_of("state", "get");
        let write = result_of("state", "set");
        assert_eq!(
            write,
            result_of("timers", "set"),
            "state.set and timers.set return the same type (the glue's writeResult)"
        );
        let entries = result_of("state", "entries");
        let entry = match kind(&entries) {
            TypeDefKind::List(Type::Id(entry)) => *entry,
            other => panic!("state.entries returns a list of tuples, got {other:?}"),
        };
        let entry_at = offsets(entry);
        let due = result_of("timers", "due");

        // The attributes span.add-event takes.
        let span = resolve.packages[package].interfaces["span"];
        let add_event = &resolve.interfaces[span].functions["add-event"];
        let attribute = match kind(&add_event.params[1].ty) {
            TypeDefKind::List(Type::Id(attribute)) => *attribute,
            other => panic!("span.add-event takes a list of tuples, got {other:?}"),
        };
        let attribute_at = offsets(attribute);

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
            ("getResultSize", size(&get)),
            ("getResultAlign", align(&get)),
            ("getResultPayloadOffset", payload(&get)),
            ("writeResultSize", size(&write)),
            ("writeResultAlign", align(&write)),
            ("writeResultPayloadOffset", payload(&write)),
            ("entriesResultSize", size(&entries)),
            ("entriesResultAlign", align(&entries)),
            ("entrySize", size(&Type::Id(entry))),
            ("entryAlign", align(&Type::Id(entry))),
            ("entryNameOffset", entry_at["0"]),
            ("entryValueOffset", entry_at["1"]),
            ("dueResultSize", size(&due)),
            ("dueResultAlign", align(&due)),
            ("dueResultPayloadOffset", payload(&due)),
            ("attributeSize", size(&Type::Id(attribute))),
            ("attributeAlign", align(&Type::Id(attribute))),
            ("attributeKeyOffset", attribute_at["0"]),
            ("attributeValueOffset", attribute_at["1"]),
        ]
    }

    /// A core wasm value type, as Go's //go:wasmimport and //go:wasmexport map their
    /// parameter types (and the canonical ABI's flat types on wasm32).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Core {
        I32,
        I64,
        F32,
        F64,
    }

    /// A core function type: parameters, then results.
    type CoreSignature = (Vec<Core>, Vec<Core>);

    fn core(ty: WasmType) -> Core {
        match ty {
            WasmType::I32 | WasmType::Pointer | WasmType::Length => Core::I32,
            WasmType::I64 | WasmType::PointerOrI64 => Core::I64,
            WasmType::F32 => Core::F32,
            WasmType::F64 => Core::F64,
        }
    }

    fn signature_of(resolve: &Resolve, variant: AbiVariant, f: &Function) -> CoreSignature {
        let sig = resolve.wasm_signature(variant, f);
        (
            sig.params.into_iter().map(core).collect(),
            sig.results.into_iter().map(core).collect(),
        )
    }

    /// The core signature of every function of the `stateful-plugin` world (a
    /// superset of `plugin`) as the Go glue must declare it: imports by
    /// `module name` (the interface's id, version included, and the function's
    /// name), exports by their name, post-return functions included.
    fn wit_signatures() -> BTreeMap<String, CoreSignature> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve.push_dir(WIT_DIR).expect("wit/ parses");
        let world = resolve
            .select_world(&[package], Some("stateful-plugin"))
            .expect("wit/ has the world `stateful-plugin`");
        let mut signatures = BTreeMap::new();
        for item in resolve.worlds[world].imports.values() {
            let WorldItem::Interface { id, .. } = item else {
                continue;
            };
            let module = resolve.id_of(*id).expect("a named interface");
            for (name, f) in &resolve.interfaces[*id].functions {
                let sig = signature_of(&resolve, AbiVariant::GuestImport, f);
                signatures.insert(format!("{module} {name}"), sig);
            }
        }
        for (key, item) in &resolve.worlds[world].exports {
            let (WorldKey::Name(name), WorldItem::Function(f)) = (key, item) else {
                continue;
            };
            let sig = resolve.wasm_signature(AbiVariant::GuestExport, f);
            if sig.retptr {
                signatures.insert(format!("cabi_post_{name}"), (vec![Core::I32], vec![]));
            }
            signatures.insert(
                name.clone(),
                signature_of(&resolve, AbiVariant::GuestExport, f),
            );
        }
        signatures
    }

    /// The Go type of a //go:wasmimport or //go:wasmexport parameter or result, as a
    /// core type.
    fn go_core(ty: &str) -> Option<Core> {
        match ty {
            "uint32" | "int32" | "bool" | "unsafe.Pointer" => Some(Core::I32),
            "uint64" | "int64" => Some(Core::I64),
            "float32" => Some(Core::F32),
            "float64" => Some(Core::F64),
            _ => None,
        }
    }

    /// Go parameter list text (`a, b uint32, c int64` or `uint32, int64`) as core
    /// types.
    fn go_params(text: &str) -> Result<Vec<Core>, String> {
        let items: Vec<Vec<&str>> = text
            .split(',')
            .map(|item| item.split_whitespace().collect::<Vec<_>>())
            .filter(|words| !words.is_empty())
            .collect();
        let typed = |ty: &str| go_core(ty).ok_or(format!("`{ty}` is not a wasm type"));
        if items.iter().all(|words| words.len() == 1)
            && items.iter().all(|w| go_core(w[0]).is_some())
        {
            return items.iter().map(|w| typed(w[0])).collect();
        }
        // Named: a name without a type takes the type of the next one that has one.
        let mut types = Vec::new();
        let mut pending = None;
        for words in items.iter().rev() {
            match words.as_slice() {
                [_, ty] => pending = Some(typed(ty)?),
                [_] => {}
                _ => return Err(format!("cannot read the parameter `{}`", words.join(" "))),
            }
            types.push(pending.ok_or("a parameter without a type")?);
        }
        types.reverse();
        Ok(types)
    }

    /// The //go:wasmimport and //go:wasmexport functions of a Go file, keyed like
    /// [`wit_signatures`], with the line of the directive.
    fn go_signatures(source: &str) -> Result<BTreeMap<String, (usize, CoreSignature)>, String> {
        let lines: Vec<&str> = source.lines().collect();
        let mut signatures = BTreeMap::new();
        for (i, line) in lines.iter().enumerate() {
            let key = if let Some(rest) = line.strip_prefix("//go:wasmimport ") {
                rest.trim().to_owned()
            } else if let Some(rest) = line.strip_prefix("//go:wasmexport ") {
                rest.trim().to_owned()
            } else {
                continue;
            };
            // The declaration follows the directive; gofmt ends each line of a
            // parameter list that goes on with a comma.
            let mut decl = String::new();
            for next in &lines[i + 1..] {
                decl.push_str(next.trim());
                decl.push(' ');
                if !next.trim_end().ends_with(',') {
                    break;
                }
            }
            let at = format!("abi_wasm.go:{}", i + 1);
            let decl = decl.split('{').next().unwrap_or_default();
            let open = decl
                .find('(')
                .ok_or(format!("{at}: no func after the directive"))?;
            let close = decl.find(')').ok_or(format!("{at}: no `)`"))?;
            let params = go_params(&decl[open + 1..close]).map_err(|e| format!("{at}: {e}"))?;
            let results = decl[close + 1..].trim();
            let results = if results.is_empty() {
                vec![]
            } else {
                go_params(results.trim_matches(|c| c == '(' || c == ')'))
                    .map_err(|e| format!("{at}: {e}"))?
            };
            if signatures
                .insert(key.clone(), (i + 1, (params, results)))
                .is_some()
            {
                return Err(format!("{at}: `{key}` twice"));
            }
        }
        Ok(signatures)
    }

    /// One line per WIT function whose Go declaration is missing or has another
    /// signature. (The glue's own exports, such as cabi_realloc, have no WIT function.)
    fn signature_mismatches(
        go: &BTreeMap<String, (usize, CoreSignature)>,
        wit: &BTreeMap<String, CoreSignature>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, want) in wit {
            match go.get(key) {
                None => problems.push(format!(
                    "`{key}`: no //go:wasmimport or //go:wasmexport in abi_wasm.go (the WIT has it: {want:?})"
                )),
                Some((line, got)) if got != want => problems.push(format!(
                    "`{key}` (abi_wasm.go:{line}): Go declares {got:?}, the canonical ABI of the WIT gives {want:?}"
                )),
                Some(_) => {}
            }
        }
        for (key, (line, _)) in go {
            let is_import = key.contains(' ');
            if is_import && !wit.contains_key(key) {
                problems.push(format!(
                    "`{key}` (abi_wasm.go:{line}): no such function in the WIT (module names carry the package version)"
                ));
            }
        }
        problems
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

    #[test]
    fn the_go_sdk_declares_the_core_signatures_the_wit_gives() {
        let go = go_signatures(&go_source()).unwrap_or_else(|e| panic!("{e}"));
        let problems = signature_mismatches(&go, &wit_signatures());
        assert!(
            problems.is_empty(),
            "the Go SDK's imports and exports disagree with the WIT:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn a_wrong_signature_or_module_is_named() {
        let wit = wit_signatures();
        let source = go_source()
            // fired-timer's due-ms is an s64: as a uint32 every later field shifts.
            .replacen(
                "keySome, keyPtr, keyLen uint32, dueMs int64,",
                "keySome, keyPtr, keyLen, dueMs uint32,",
                1,
            )
            .replacen(
                "weir:plugin/timers@0.1.2 cancel",
                "weir:plugin/timers@0.1.1 cancel",
                1,
            );
        let go = go_signatures(&source).unwrap_or_else(|e| panic!("{e}"));
        let problems = signature_mismatches(&go, &wit);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems[0].contains("`handle-timer`") && problems[0].contains("Go declares"),
            "{problems:#?}"
        );
        assert!(
            problems[1].starts_with("`weir:plugin/timers@0.1.2 cancel`: no //go:wasmimport"),
            "{problems:#?}"
        );
        assert!(
            problems[2].starts_with("`weir:plugin/timers@0.1.1 cancel`"),
            "{problems:#?}"
        );
    }

    #[test]
    fn go_parameter_lists_are_read_as_go_groups_them() {
        use Core::*;
        assert_eq!(
            go_params("a, b uint32, c int64, d int32"),
            Ok(vec![I32, I32, I64, I32])
        );
        assert_eq!(go_params("uint32"), Ok(vec![I32]));
        assert_eq!(go_params(""), Ok(vec![]));
        assert!(go_params("s string").unwrap_err().contains("`string`"));
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
