"""An exported models folder is data, not code: check it before anything in it runs.

A SavedModel is a graph of TensorFlow ops, and some ops read and write files, run Python
(`PyFunc`, `EagerPyFunc`), start processes or reach the network. So every op in every graph and
function of each SavedModel is compared with the ops that export_graphs.py itself writes, before
TensorFlow loads it; model.json and embeddings.json are read as strict JSON and checked against
the models; after loading, the signatures are checked against the contract and each model is
called once on one tile. This module imports nothing of the project's model code, and TensorFlow only
inside the functions that need it, so that scripts' --help stays fast.
"""
import json
import math
import os

from vae.cli import UserError, warn

# Every op export_graphs.py writes into the functions that tf.saved_model.load can call: the
# Keras layers (convolutions, transposed convolutions, dense, batch norm at inference, ELU,
# sigmoid, the refiner's clip, the spatial decoder's and the style refiner's bilinear upsampling,
# a new spatial decoder's depth to space, and its resizing convolutions computed at the lower size:
# the kernels made by an einsum, the border mirrored),
# mixed-precision casts, and variable reads. tests/test_safety.py exports every kind of model and
# asserts that this is exactly the set they use.
ALLOWED_OPS = frozenset({
    "AddV2", "BiasAdd", "Cast", "ConcatV2", "Const", "Conv2D", "Conv2DBackpropInput", "DepthToSpace", "Einsum",
    "Elu", "Identity",
    "MatMul", "Maximum", "Minimum", "MirrorPad", "Mul", "NoOp", "Pack", "ReadVariableOp", "Reshape", "ResizeBilinear", "Rsqrt",
    "Shape", "Sigmoid", "Squeeze", "StatefulPartitionedCall", "StridedSlice", "Sub",
})
# The saver that tf.saved_model.save adds: the graph's own nodes (variable handles, placeholders)
# and the functions reachable only from them, which write and read checkpoints. tf.saved_model.load
# never runs them (it restores variables with its own code), so checkpoint I/O is allowed there
# and nowhere else: a SaveV2 in a signature could write any file.
SAVER_OPS = frozenset({
    "AssignVariableOp", "DisableCopyOnRead", "MergeV2Checkpoints", "Placeholder", "RestoreV2", "SaveV2",
    "Select", "ShardedFilename", "StaticRegexFullMatch", "StringJoin", "VarHandleOp", "VarIsInitializedOp",
})

# The contract's signatures: input name, output names; every tensor float32.
SIGNATURES = {
    "encoder": ("images", ("mean", "log_var")),
    "decoder": ("z", ("images",)),
    "refiner": ("images", ("images",)),
}
MAX_SIDE, MAX_CODES = 8192, 65536  # far beyond any real model; keeps the load-time probe small
MAX_DOWNSAMPLE = 1024
MAX_BANK = 1 << 16  # code neighbourhoods per source in bank.npz: each frame position meets all of them
MAX_SIDE_IMAGE = 1 << 20  # --image-side: pixels of a painting's shorter side, any real one


def read_saved_model(path):
    """The SavedModel protobuf of one model folder, parsed as tf.saved_model.load would."""
    pb = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(pb):  # the loader would fall back to saved_model.pbtxt: not ours
        raise UserError(f"{path}: no saved_model.pb; not a model written by export_graphs.py")
    # Here, not at the top: the JSON checks below run before scripts import TensorFlow.
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2
    proto = saved_model_pb2.SavedModel()
    try:
        with open(pb, "rb") as f:
            proto.ParseFromString(f.read())
    except DecodeError as e:
        raise UserError(f"{pb}: not a SavedModel ({e})") from e
    return proto


def _called(attrs):
    """Names of the functions that a node's attributes refer to (calls, branches, loop bodies)."""
    names = []
    for value in attrs.values():
        funcs = [value.func] if value.HasField("func") else list(value.list.func)
        for func in funcs:
            names.append(func.name)
            names += _called(func.attr)
    return names


def op_regions(proto):
    """(ops of the functions tf.saved_model.load can call, ops of the saver, problems).

    Every node and function is looked at, reachable or not. The saver is the graph's own nodes
    and the functions only they call; everything else, from the object graph's functions down
    through nested calls, branches and loop bodies, is what the loader can run.
    """
    if len(proto.meta_graphs) != 1 or not proto.meta_graphs[0].HasField("object_graph_def"):
        # Without exactly one object graph tf.saved_model.load takes it for a TF1 model and runs
        # its init and restore ops as it loads.
        return set(), set(), {"a TF1 graph (its init and restore ops run at load)"}
    meta = proto.meta_graphs[0]
    library = {f.signature.name: f for f in meta.graph_def.library.function}
    # A node whose op names a library function calls it; TensorFlow refuses functions named like
    # ops, but a library that tries is not one of ours.
    problems = {f"a function named like the op {name}" for name in library if name in ALLOWED_OPS | SAVER_OPS}

    def reach(roots):
        seen, todo = set(), list(roots)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name not in library:  # it would call whatever the process has under that name
                problems.add(f"a call to {name!r}, a function not in the SavedModel")
                continue
            for node in library[name].node_def:
                todo += _called(node.attr)
        return seen

    objects = meta.object_graph_def
    roots = list(objects.concrete_functions)
    for node in objects.nodes:
        roots += list(node.function.concrete_functions)
        if node.HasField("bare_concrete_function"):
            roots.append(node.bare_concrete_function.concrete_function_name)
    runnable = reach(roots)
    saver_functions = reach(name for node in meta.graph_def.node for name in _called(node.attr)) - runnable
    run_ops, saver_ops = set(), {node.op for node in meta.graph_def.node}
    for name, function in library.items():
        (saver_ops if name in saver_functions else run_ops).update(node.op for node in function.node_def)
    return run_ops, saver_ops, problems


def disallowed_ops(proto):
    """The ops in the SavedModel that export_graphs.py would not have written, sorted."""
    run_ops, saver_ops, problems = op_regions(proto)
    return sorted(problems | (run_ops - ALLOWED_OPS) | (saver_ops - ALLOWED_OPS - SAVER_OPS))


def check_ops(paths, unsafe=False):
    """Refuse the SavedModels in `paths` (kind: folder) that use ops outside the allowlist,
    all named in one error; with `unsafe`, one warning instead."""
    found = {path: disallowed_ops(read_saved_model(path)) for path in paths.values()}
    found = {path: ops for path, ops in found.items() if ops}
    if not found:
        return
    listing = "; ".join(f"{path} uses {', '.join(ops)}" for path, ops in found.items())
    if unsafe:
        warn(f"--unsafe-models: loading ops that export_graphs.py never writes: {listing}")
        return
    raise UserError(f"{listing}: ops that export_graphs.py never writes, which may read or write files, run "
                    "Python or reach the network; nothing was loaded (--unsafe-models loads them anyway)")


def _strict_json(path):
    """JSON as the standard has it: no NaN or Infinity, no duplicate keys, nothing else."""
    def reject_constant(name):
        raise ValueError(f"{name} is not JSON")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate keys")
        return dict(pairs)
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"), parse_constant=reject_constant,
                              object_pairs_hook=no_duplicates)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{path}: not a valid JSON file ({e})") from e


def _count(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def read_model_json(path):
    """model.json as export_graphs.py writes it: tile size and code count within bounds."""
    meta = _strict_json(path)
    if not isinstance(meta, dict):
        raise UserError(f"{path}: expected a JSON object with width, height and codes")
    for key, high in (("width", MAX_SIDE), ("height", MAX_SIDE), ("codes", MAX_CODES)):
        if not _count(meta.get(key), 1, high):
            raise UserError(f"{path}: {key} must be a whole number from 1 to {high}, not {meta.get(key)!r}")
    for key in ("vae_step", "refiner_step"):
        if key in meta and not _count(meta[key], 0, 2 ** 63):
            raise UserError(f"{path}: {key} must be a whole number, not {meta[key]!r}")
    style = meta.get("refiner_style", [])
    if not isinstance(style, list) or not all(isinstance(s, str) for s in style):
        raise UserError(f"{path}: refiner_style must be a list of --style texts, not {style!r}")
    latent = meta.get("latent", "global")  # older exports say nothing: global
    if latent not in ("global", "spatial"):
        raise UserError(f"{path}: latent must be \"global\" or \"spatial\", not {latent!r}")
    if latent == "spatial":
        d = meta.get("downsample")
        if not (_count(d, 2, MAX_DOWNSAMPLE) and d & (d - 1) == 0):
            raise UserError(f"{path}: a spatial model needs a downsample that is a power of two from 2 to "
                            f"{MAX_DOWNSAMPLE}, not {d!r}")
    _check_scales(path, meta, latent)
    return meta


def _scale(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1


def _check_scales(path, meta, latent):
    """`scales` ({source: {"scale": fit, mixed or S in (0, 1]} or {"side": fit, mixed or N}}) and
    `render_scale` (S, a spatial model's only), as export_graphs.py writes them from the manifests."""
    scales = meta.get("scales", {})
    if not isinstance(scales, dict):
        raise UserError(f"{path}: scales must be an object of source names, not {scales!r}")
    for name, entry in scales.items():
        ok = isinstance(entry, dict) and len(entry) == 1
        if ok:
            (key, value), = entry.items()
            ok = value in ("fit", "mixed") or (key == "scale" and _scale(value)) or \
                (key == "side" and _count(value, 1, MAX_SIDE_IMAGE))
        if not ok:
            raise UserError(f"{path}: the scale of source {name!r} must be {{\"scale\": fit, mixed or a number in "
                            f"(0, 1]}} or {{\"side\": fit, mixed or pixels}}, not {entry!r}")
    if "render_scale" in meta:
        if not _scale(meta["render_scale"]):
            raise UserError(f"{path}: render_scale must be a number above 0 and at most 1, not "
                            f"{meta['render_scale']!r}")
        if latent != "spatial":
            raise UserError(f"{path}: render_scale is for a spatial model; this one is {latent}")


def read_models_folder(folder, need_refiner=False):
    """An export folder's checked model.json and its model folders {kind: path}: all of it that
    is checked without TensorFlow, so that scripts can refuse a wrong folder before its import."""
    meta_path = os.path.join(folder, "model.json")
    if not os.path.isfile(meta_path):
        raise UserError(f"{folder}: no exported models (model.json missing); run export_graphs.py first")
    meta = read_model_json(meta_path)
    paths = {}
    for kind in ("encoder", "decoder", "refiner"):
        path = os.path.join(folder, kind)
        if os.path.isdir(path):
            paths[kind] = path
        elif kind != "refiner" or need_refiner:
            raise UserError(f"{path}: missing; run export_graphs.py")
    return meta, paths


def check_embeddings(path, codes):
    """The sources of embeddings.json, checked to be as evaluate_embeddings.py writes them, with
    finite means of `codes` numbers (a spatial model's channel count: its means are per channel)."""
    data = _strict_json(path)
    sources = data.get("sources") if isinstance(data, dict) else None
    if not isinstance(sources, dict) or not sources:
        raise UserError(f"{path}: not a valid embeddings file (expected {{\"sources\": {{NAME: ...}}}})")
    for name, entry in sources.items():
        if not isinstance(entry, dict) or entry.get("kind") not in ("video", "images") \
                or not _count(entry.get("count"), 1, 2 ** 63) or not isinstance(entry.get("mean"), list):
            raise UserError(f"{path}: source {name!r} needs a kind (video or images), a count and a mean")
        mean = entry["mean"]
        if len(mean) != codes:
            raise UserError(f"{path}: source {name!r} has {len(mean)} codes but the models use {codes}; "
                            "run evaluate_embeddings.py again after exporting")
        lab = entry.get("lab_mean", [0, 0, 0])
        if not isinstance(lab, list) or len(lab) != 3:
            raise UserError(f"{path}: source {name!r} has a lab_mean that is not 3 numbers")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in mean + lab):
            raise UserError(f"{path}: source {name!r} has a mean that is not all finite numbers")
    return sources


def _shape(shape):
    """[N,36,64,3]: N the open batch size, ? an open height or width (a spatial model's)."""
    return "[" + ",".join(("N" if i == 0 else "?") if d is None else str(d) for i, d in enumerate(shape)) + "]"


def _probes(width, height, codes, downsample):
    """{kind: [(input, {output name: expected shape})]}: what each model is called with at load
    and must answer. A global model: one tile. A spatial one (`downsample` d): one tile, and one
    input of another size, not a multiple of d for the encoder and refiner."""
    import tensorflow as tf
    if downsample is None:
        return {"encoder": [(tf.fill([1, height, width, 3], 0.5), {"mean": [1, codes], "log_var": [1, codes]})],
                "decoder": [(tf.zeros([1, codes]), {"images": [1, height, width, 3]})],
                "refiner": [(tf.fill([1, height, width, 3], 0.5), {"images": [1, height, width, 3]})]}
    d = downsample
    probes = {"encoder": [], "decoder": [], "refiner": []}
    for h, w in ((height, width), (2 * d + 3, 3 * d + 1)):
        ch, cw = -(-h // d), -(-w // d)
        image = tf.fill([1, h, w, 3], 0.5)
        probes["encoder"].append((image, {"mean": [1, ch, cw, codes], "log_var": [1, ch, cw, codes]}))
        probes["decoder"].append((tf.zeros([1, ch, cw, codes]), {"images": [1, ch * d, cw * d, 3]}))
        probes["refiner"].append((image, {"images": [1, h, w, 3]}))
    return probes


def serving_functions(folder, loaded, width, height, codes, downsample=None):
    """{kind: its `serving_default`} of the loaded models (kind: object), each checked against
    the contract and model.json: names, dtypes, ranks, sizes as declared, and as answered for
    one tile (and for a spatial model, whose `downsample` is given, at one other size too)."""
    import tensorflow as tf
    functions = {}
    for kind, obj in loaded.items():
        signatures = getattr(obj, "signatures", {})
        if "serving_default" not in signatures:
            raise UserError(f"{os.path.join(folder, kind)}: no serving_default signature (see export_graphs.py)")
        functions[kind] = signatures["serving_default"]
    if downsample is None:
        expected = {"images": [None, height, width, 3], "z": [None, codes], "mean": [None, codes],
                    "log_var": [None, codes]}
        described = f"{width}x{height} tiles and {codes} codes (model.json)"
    else:  # any size: a code map of `codes` channels at 1/downsample
        expected = {"images": [None, None, None, 3], "z": [None, None, None, codes],
                    "mean": [None, None, None, codes], "log_var": [None, None, None, codes]}
        described = f"a spatial model of {codes} channels at 1/{downsample} (model.json)"
    for kind, fn in functions.items():
        path = os.path.join(folder, kind)
        input_name, output_names = SIGNATURES[kind]
        args, kwargs = fn.structured_input_signature
        outputs = fn.structured_outputs if isinstance(fn.structured_outputs, dict) else {}
        declared = {f"input {n}": spec for n, spec in kwargs.items()}
        declared.update({f"output {n}": t for n, t in outputs.items()})
        wanted = {f"input {input_name}": expected[input_name]}
        wanted.update({f"output {n}": expected[n] for n in output_names})
        if args or set(declared) != set(wanted):
            raise UserError(f"{path}: its serving_default signature takes and gives {', '.join(sorted(declared))}; "
                            f"expected {', '.join(sorted(wanted))} (see export_graphs.py)")
        for name, want in wanted.items():
            spec = declared[name]
            dims = spec.shape.as_list() if spec.shape.rank is not None else None
            if spec.dtype != tf.float32 or dims is None or len(dims) != len(want) \
                    or any(d is not None and w is not None and d != w for d, w in zip(dims, want)):
                got = _shape(dims) if dims is not None else "of unknown rank"
                raise UserError(f"{path}: {name} is {spec.dtype.name} {got}; expected float32 "
                                f"{_shape(want)} for {described}")
    # Declared shapes may leave sizes open: call each model to see what it answers.
    probes = _probes(width, height, codes, downsample)
    for kind, fn in functions.items():
        input_name, _ = SIGNATURES[kind]
        for probe, wanted in probes[kind]:
            try:
                answer = fn(**{input_name: probe})
            except (tf.errors.OpError, TypeError, ValueError) as e:
                message = getattr(e, "message", str(e)).strip().splitlines()[0]
                raise UserError(f"{os.path.join(folder, kind)}: fails on one {_shape(probe.shape)} input: "
                                f"{message}") from e
            for name, want in wanted.items():
                got = answer[name]
                if got.dtype != tf.float32 or got.shape.as_list() != want:
                    raise UserError(f"{os.path.join(folder, kind)}: answers {input_name} {_shape(probe.shape)} "
                                    f"with {name} {got.dtype.name} {_shape(got.shape)}; expected float32 "
                                    f"{_shape(want)} for {described}")
    return functions


def embedding_names(path):
    """The source names of an embeddings.json (checked as strict JSON)."""
    data = _strict_json(path)
    sources = data.get("sources") if isinstance(data, dict) else None
    if not isinstance(sources, dict):
        raise UserError(f"{path}: not a valid embeddings file (expected {{\"sources\": {{NAME: ...}}}})")
    return sorted(sources)


def _arrays_per_source(path, names, what):
    """{source: array} of an .npz that evaluate_embeddings.py writes beside embeddings.json, read
    with nothing unpickled; its sources must be among `names` (embeddings.json's)."""
    import numpy as np
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{path}: not a file of {what} written by evaluate_embeddings.py ({e}); run it again") from e
    # A source may lack them (its mean written into embeddings.json by hand, say): its texture is
    # then not measured. A source that is not listed means the two files do not belong together.
    if not arrays or not set(arrays) <= set(names):
        raise UserError(f"{path}: holds {what} of {', '.join(sorted(arrays)) or 'nothing'} but embeddings.json "
                        f"lists {', '.join(sorted(names))}; run evaluate_embeddings.py again")
    return arrays


def check_tiles(path, names):
    """tiles.npz as evaluate_embeddings.py writes it: one uint8 array [N,h,w,3] of a source's
    tiles per source of embeddings.json (`names`, each at most once), nothing pickled; {name: array}."""
    import numpy as np
    tiles = _arrays_per_source(path, names, "tiles")
    for name, array in tiles.items():
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or not len(array) \
                or not 0 < array.shape[1] <= MAX_SIDE or not 0 < array.shape[2] <= MAX_SIDE:
            raise UserError(f"{path}: the tiles of {name!r} are {array.dtype} {list(array.shape)}; expected "
                            "uint8 [N,h,w,3]; run evaluate_embeddings.py again")
    return tiles


def check_bank(path, names, codes):
    """bank.npz as evaluate_embeddings.py writes it: one float32 array [P,k,k,codes] of finite code
    neighbourhoods (k odd) per source of embeddings.json (`names`), nothing pickled; {name: array}."""
    import numpy as np
    banks = _arrays_per_source(path, names, "codes")
    for name, array in banks.items():
        if array.dtype != np.float32 or array.ndim != 4 or array.shape[-1] != codes or not len(array) \
                or array.shape[1] != array.shape[2] or array.shape[1] % 2 != 1 or len(array) > MAX_BANK \
                or not np.isfinite(array).all():
            raise UserError(f"{path}: the codes of {name!r} are {array.dtype} {list(array.shape)}; expected finite "
                            f"float32 [P,k,k,{codes}] (k odd, P at most {MAX_BANK}); run evaluate_embeddings.py again")
    return banks
