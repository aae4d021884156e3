"""A shared models folder is data, not code: hostile SavedModels and JSON are refused before they run."""
import json
import os
import shutil
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, run_script
from vae import safety
from vae.cli import UserError

CODES = 32  # the `exported` fixture's

# Fresh exports of every kind the project writes: VAE and refiner, tile sizes other than the
# fixture's (one odd), under both mixed-precision policies (train_vae.py --mixed-precision),
# global and spatial (at two downsample factors, their refiner for any size).
EXPORT_KINDS = textwrap.dedent("""
    import sys
    import keras
    from vae import export, model, refiner, style
    out = sys.argv[1]
    for name, (width, height, codes, policy, d) in {"a": (32, 18, 8, "mixed_bfloat16", None),
                                                    "b": (48, 27, 16, "mixed_float16", None),
                                                    "c": (48, 27, 8, "mixed_bfloat16", 4),
                                                    "d": (64, 36, 4, "mixed_float16", 16)}.items():
        keras.mixed_precision.set_global_policy(policy)
        if d is None:
            vae = model.build_vae(model.VAEConfig(width, height, codes))
            shapes = (height, width, 3), (codes,)
        else:
            filters, kernels = model.spatial_layers(d)
            # The decoders a spatial run may have: a new run's (resizing at the lower size, mirrored)
            # and an earlier one's (sub-pixel inner stages, resizing at the doubled size).
            vae = model.build_vae(model.VAEConfig(width, height, codes, latent="spatial", downsample=d,
                                                  filters=filters, kernels=kernels,
                                                  upsample="shuffle" if d == 16 else "resize",
                                                  resize_border="zeros" if d == 16 else "mirror"))
            shapes = (None, None, 3), (None, None, codes)
        net = refiner.build_refiner(refiner.RefinerConfig(width, height, 8, 1), any_size=d is not None)
        export.save("encoder", vae.encoder, shapes[0], f"{out}/{name}")
        export.save("decoder", vae.decoder, shapes[1], f"{out}/{name}")
        export.save("refiner", net, shapes[0], f"{out}/{name}")
        # The style refiner, for a tile size and for any size.
        styled = style.build_generator(style.StyleRefinerConfig(width, height, filters=4, blocks=1),
                                       any_size=d is not None)
        export.save("refiner", styled, shapes[0], f"{out}/{name}_style")
""")


def embeddings(codes=CODES, **clip):
    return {"sources": {"clip": {"kind": "video", "count": 40, "mean": [0.1] * codes, **clip},
                        "paintings": {"kind": "images", "count": 40, "mean": [0.2] * codes,
                                      "lab_mean": [50.0, 10.0, 20.0]}}}


def copy_models(exported, dest):
    """The fixture's export with embeddings of its own (other tests' may or may not be there)."""
    shutil.copytree(exported["models"], dest)
    (dest / "embeddings.json").write_text(json.dumps(embeddings()))
    return dest


def replace_model(folder, kind, attack):
    """Swap folder/kind for a hand-made tf.Module that calls the original, then `attack` on its answer."""
    import tensorflow as tf
    inner = tf.saved_model.load(str(folder / kind))
    input_name, _ = safety.SIGNATURES[kind]
    spec = inner.signatures["serving_default"].structured_input_signature[1][input_name]
    module = tf.Module()
    module.inner = inner
    module.serve = tf.function(lambda x: attack(inner.signatures["serving_default"](**{input_name: x})),
                               input_signature=[spec])
    shutil.rmtree(folder / kind)
    tf.saved_model.save(module, str(folder / kind), signatures={"serving_default": module.serve})


@pytest.fixture(scope="session")
def hostile(exported, tmp_path_factory):
    """Copies of the exported folder, each with one model that touches the file system or runs Python."""
    import tensorflow as tf
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "PWNED"

    def write(out):
        tf.io.write_file(str(marker), "written by a shared model")
        return out

    def python(out):
        x = tf.py_function(lambda: 0.0, [], tf.float32) + tf.numpy_function(lambda: np.float32(0), [], tf.float32)
        return {name: value + 0 * x for name, value in out.items()}

    def read(out):
        x = tf.cast(tf.strings.length(tf.io.read_file(str(exported["models"] / "model.json"))), tf.float32)
        return {name: value + 0 * x for name, value in out.items()}

    folders = {}
    for name, kind, attack, ops in (("write", "encoder", write, ["WriteFile"]),
                                    ("python", "decoder", python, ["EagerPyFunc", "PyFunc"]),
                                    ("read", "refiner", read, ["ReadFile"])):
        folder = copy_models(exported, root / name)
        replace_model(folder, kind, attack)
        folders[name] = {"models": folder, "model": folder / kind, "ops": ops}
    assert not marker.exists()  # building them ran nothing
    return {"marker": marker, **folders}


def test_every_exported_op_is_allowed(tmp_path, exported, spatial):
    """The allowlist is exactly what export_graphs.py writes: nothing it writes is refused,
    nothing is allowed that it does not write."""
    import subprocess
    (tmp_path / "export.py").write_text(EXPORT_KINDS)
    subprocess.run([sys.executable, str(tmp_path / "export.py"), str(tmp_path)], check=True, cwd=ROOT,
                   capture_output=True, env={**os.environ, "PYTHONPATH": ROOT})
    folders = [exported["models"], spatial["models"]] + [tmp_path / name for name in "abcd"]
    models = [folder / kind for folder in folders for kind in ("encoder", "decoder", "refiner")]
    models += [tmp_path / f"{name}_style" / "refiner" for name in "abcd"]
    run_ops, saver_ops = set(), set()
    for path in models:
        proto = safety.read_saved_model(str(path))
        assert safety.disallowed_ops(proto) == [], path
        runs, saves, problems = safety.op_regions(proto)
        assert not problems
        run_ops |= runs
        saver_ops |= saves
    assert run_ops == safety.ALLOWED_OPS
    assert saver_ops - safety.ALLOWED_OPS == safety.SAVER_OPS
    assert "Cast" in run_ops  # the mixed-precision exports were among them
    assert "ResizeBilinear" in run_ops  # and the spatial decoders
    # The file-touching checkpoint ops are allowed to the saver only, which the loader never runs.
    assert {"SaveV2", "RestoreV2", "MergeV2Checkpoints"} <= safety.SAVER_OPS - safety.ALLOWED_OPS


SCRIPTS = {
    "mogrify_video.py": lambda models, tmp, exported, media: [media["clip"], tmp / "out.mp4", "--models", models],
    "evaluate_embeddings.py": lambda models, tmp, exported, media: ["--data", exported["data"], "--models", models],
    "train_refiner.py": lambda models, tmp, exported, media: ["--data", exported["data"], "--models", models,
                                                              "--logdir", tmp / "log", "--steps", 1,
                                                              "--identity-steps", 1, "--batch-size", 4],
}


def test_every_attack_is_refused_before_loading(hostile):
    for attack in ("write", "python", "read"):
        folder = hostile[attack]
        paths = {kind: str(folder["models"] / kind) for kind in ("encoder", "decoder", "refiner")}
        with pytest.raises(UserError) as refused:
            safety.check_ops(paths)
        message = str(refused.value)
        assert str(folder["model"]) in message and "--unsafe-models" in message
        assert all(op in message for op in folder["ops"])
    assert not hostile["marker"].exists()


# Every script meets every attack through the same safety.check_ops (above), before it loads
# anything: each script is run against one attack, and each attack is met by one script.
@pytest.mark.parametrize("script, attack", [("mogrify_video.py", "write"), ("evaluate_embeddings.py", "python"),
                                            ("train_refiner.py", "read")])
def test_hostile_models_are_refused(tmp_path, exported, media, hostile, script, attack):
    folder = hostile[attack]
    before = (folder["models"] / "embeddings.json").read_bytes()
    result = run_script(script, *SCRIPTS[script](folder["models"], tmp_path, exported, media), check=False)
    assert_one_line_error(result, str(folder["model"]), *folder["ops"], "--unsafe-models")
    assert not hostile["marker"].exists()
    assert os.listdir(tmp_path) == []  # no video, no logdir
    assert (folder["models"] / "embeddings.json").read_bytes() == before  # not rewritten


def test_unsafe_models_load_after_a_warning(tmp_path, exported, hostile):
    """The flag does what it says; the refused model was a real threat: with it, the file is written."""
    models = tmp_path / "models"
    shutil.copytree(hostile["write"]["models"], models)
    result = run_script("evaluate_embeddings.py", "--data", exported["data"], "--models", models, "--unsafe-models")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "WriteFile" in warnings[0] and str(models / "encoder") in warnings[0]
    assert hostile["marker"].exists()
    hostile["marker"].unlink()
    assert "clip" in json.loads((models / "embeddings.json").read_text())["sources"]
    for script in SCRIPTS:
        assert "--unsafe-models" in run_script(script, "--help").stdout


def test_own_models_load_without_warning(exported):
    from vae import export
    import io
    import contextlib
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        models = export.Models(str(exported["models"]), need_refiner=True)
    assert stderr.getvalue() == ""
    assert models.decode(np.zeros((1, CODES), np.float32)).shape == (1, 36, 64, 3)


@pytest.mark.parametrize("text, fragment", [
    ("{'width': 64, 'height': 36, 'codes': 32}", "not a valid JSON"),  # a Python literal
    ('{"width": 64, "height": 36, "codes": NaN}', "NaN"),
    ('{"width": 64, "height": 36, "codes": 32, "codes": 33}', "duplicate"),
    ('[64, 36, 32]', "JSON object"),
    ('{"width": 64, "height": 36, "codes": 1e9}', "codes"),
    ('{"width": 64, "height": -36, "codes": 32}', "height"),
    ('{"width": 64, "height": 36, "codes": 33}', "[N,33]"),  # the models answer with 32
    ('{"width": 66, "height": 36, "codes": 32}', "[N,36,66,3]"),
])
def test_bad_model_json(tmp_path, exported, text, fragment):
    from vae import export
    models = copy_models(exported, tmp_path / "models")
    (models / "model.json").write_text(text)
    with pytest.raises(UserError) as e:
        export.Models(str(models))
    assert fragment in str(e.value) and str(models) in str(e.value)


def test_bad_model_json_from_a_script(tmp_path, exported):
    models = copy_models(exported, tmp_path / "models")
    (models / "model.json").write_text('{"width": 64, "height": 36, "codes": Infinity}')
    result = run_script("train_refiner.py", *SCRIPTS["train_refiner.py"](models, tmp_path, exported, None), check=False)
    assert_one_line_error(result, str(models / "model.json"), "Infinity")
    assert not (tmp_path / "log").exists()


@pytest.mark.parametrize("content, fragment", [
    ("{'sources': {}}", "not a valid JSON"),
    (json.dumps(embeddings()).replace("0.1", "NaN", 1), "NaN"),
    (json.dumps(embeddings()).replace("0.1", "1e999", 1), "finite"),
    (json.dumps(embeddings()).replace("0.1", '"0.1"', 1), "finite"),
    (json.dumps(embeddings(codes=31)), "31 codes"),
    (json.dumps(embeddings(kind="shell")), "kind"),
    (json.dumps(embeddings(lab_mean=[1, 2])), "lab_mean"),
    (json.dumps({"sources": {}}), "sources"),
    (json.dumps(embeddings())[:-5], "not a valid JSON"),
])
def test_bad_embeddings_json(tmp_path, content, fragment):
    path = tmp_path / "embeddings.json"
    path.write_text(content)
    with pytest.raises(UserError) as e:
        safety.check_embeddings(str(path), CODES)
    assert fragment in str(e.value) and str(path) in str(e.value)


def test_good_embeddings_pass(tmp_path):
    path = tmp_path / "embeddings.json"
    path.write_text(json.dumps(embeddings()))
    safety.check_embeddings(str(path), CODES)  # raises on failure


def test_bad_embeddings_from_mogrify(tmp_path, exported, media):
    models = copy_models(exported, tmp_path / "models")
    (models / "embeddings.json").write_text(json.dumps(embeddings()).replace("0.2", "NaN", 1))
    result = run_script("mogrify_video.py", media["clip"], tmp_path / "out.mp4", "--models", models, check=False)
    assert_one_line_error(result, str(models / "embeddings.json"), "NaN")
    assert not (tmp_path / "out.mp4").exists()


def test_wrong_decoder_shape_refused_at_load(tmp_path, exported, media):
    import tensorflow as tf
    from vae import export
    # Declared in the signature: refused without a call.
    declared = copy_models(exported, tmp_path / "declared")
    replace_model(declared, "decoder", lambda out: {"images": out["images"][:, :34]})
    with pytest.raises(UserError) as e:
        export.Models(str(declared))
    assert str(declared / "decoder") in str(e.value) and "[N,34,64,3]" in str(e.value)
    assert "expected float32 [N,36,64,3]" in str(e.value)
    # Left open in the signature, answered wrong: refused by the script at load, before any frame.
    answered = copy_models(exported, tmp_path / "answered")
    replace_model(answered, "decoder",
                  lambda out: {"images": out["images"][:, :tf.shape(out["images"])[0] * 0 + 34]})
    result = run_script("mogrify_video.py", media["clip"], tmp_path / "out.mp4", "--models", answered, check=False)
    assert_one_line_error(result, str(answered / "decoder"), "[1,34,64,3]", "expected float32 [1,36,64,3]")
    assert not (tmp_path / "out.mp4").exists()
    # Wrong names are refused too.
    renamed = copy_models(exported, tmp_path / "renamed")
    replace_model(renamed, "encoder", lambda out: {"mu": out["mean"], "log_var": out["log_var"]})
    with pytest.raises(UserError) as e:
        export.Models(str(renamed))
    assert "output mu" in str(e.value) and "output mean" in str(e.value)
    # A model that fails when called is named at load.
    failing = copy_models(exported, tmp_path / "failing")
    replace_model(failing, "refiner",
                  lambda out: {"images": tf.reshape(out["images"], tf.shape(out["images"]) + [0, 0, 0, 1])})
    with pytest.raises(UserError) as e:
        export.Models(str(failing))
    assert str(failing / "refiner") in str(e.value) and "fails on one [1,36,64,3] input" in str(e.value)
    # No signature at all.
    unsigned = copy_models(exported, tmp_path / "unsigned")
    shutil.rmtree(unsigned / "encoder")
    tf.saved_model.save(tf.Module(), str(unsigned / "encoder"))
    with pytest.raises(UserError, match="no serving_default"):
        export.Models(str(unsigned))


def test_other_saved_model_tricks(tmp_path, exported):
    """A TF1 graph (run as it loads) and a call to a function outside the SavedModel are refused."""
    from tensorflow.core.protobuf import saved_model_pb2
    pb = exported["models"] / "encoder" / "saved_model.pb"
    proto = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    tf1 = saved_model_pb2.SavedModel()
    tf1.CopyFrom(proto)
    tf1.meta_graphs[0].ClearField("object_graph_def")
    assert "TF1" in safety.disallowed_ops(tf1)[0]
    outside = saved_model_pb2.SavedModel()
    outside.CopyFrom(proto)
    for function in outside.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            if node.op == "StatefulPartitionedCall":
                node.attr["f"].func.name = "elsewhere"
    assert any("'elsewhere'" in op for op in safety.disallowed_ops(outside))
    # A saver op moved into the function that serves is refused there.
    moved = saved_model_pb2.SavedModel()
    moved.CopyFrom(proto)
    serving = [f for f in moved.meta_graphs[0].graph_def.library.function if "serve" in f.signature.name]
    serving[0].node_def.add(name="save", op="SaveV2")
    assert safety.disallowed_ops(moved) == ["SaveV2"]
    (tmp_path / "encoder").mkdir()
    with pytest.raises(UserError, match="saved_model.pb"):
        safety.read_saved_model(str(tmp_path / "encoder"))
    (tmp_path / "encoder" / "saved_model.pb").write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(UserError, match="not a SavedModel"):
        safety.read_saved_model(str(tmp_path / "encoder"))


CHECK_ALONE = textwrap.dedent("""
    import sys, time
    from vae import safety
    assert "tensorflow" not in sys.modules  # importing the check is free; --help stays fast
    folder = sys.argv[1]
    start = time.perf_counter()
    from tensorflow.core.protobuf import saved_model_pb2  # the scripts have imported TensorFlow already
    middle = time.perf_counter()
    safety.check_ops({kind: f"{folder}/{kind}" for kind in ("encoder", "decoder", "refiner")})
    print(middle - start, time.perf_counter() - middle)
    print(" ".join(m for m in sys.modules if m == "vae" or m.startswith("vae.")))
""")


def test_check_needs_no_model_code(tmp_path, exported):
    import subprocess
    result = subprocess.run([sys.executable, "-c", CHECK_ALONE, str(exported["models"])], cwd=ROOT, check=True,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    seconds, modules = result.stdout.splitlines()
    assert sorted(modules.split()) == ["vae", "vae.cli", "vae.safety"]
    tensorflow, check = map(float, seconds.split())
    print(f"op check of three models: {check * 1000:.0f} ms (importing TensorFlow: {tensorflow:.1f} s)")


def test_spatial_model_with_a_foreign_op_is_refused(tmp_path, spatial):
    """A spatial export whose decoder also writes a file: refused by name before it loads, by
    the check and by a script; nothing written, nothing rendered."""
    import tensorflow as tf
    marker = tmp_path / "PWNED"
    models = tmp_path / "models"
    shutil.copytree(spatial["models"], models)

    def write(out):
        tf.io.write_file(str(marker), "written by a shared model")
        return out

    replace_model(models, "decoder", write)
    before = (models / "embeddings.json").read_bytes()
    with pytest.raises(UserError) as refused:
        safety.check_ops({kind: str(models / kind) for kind in ("encoder", "decoder", "refiner")})
    assert str(models / "decoder") in str(refused.value) and "WriteFile" in str(refused.value)
    result = run_script("evaluate_embeddings.py", "--data", spatial["data"], "--models", models, check=False)
    assert_one_line_error(result, str(models / "decoder"), "WriteFile", "--unsafe-models")
    assert not marker.exists()
    assert (models / "embeddings.json").read_bytes() == before


@pytest.mark.parametrize("change, fragment", [
    ({"downsample": 4}, "expected float32 [1,9,16,16]"),  # the models halve three times, not twice
    ({"downsample": 6}, "power of two"),
    ({"downsample": None}, "downsample"),
    ({"latent": "pixels"}, "latent"),
    ({"latent": None}, "[N,16]"),  # said to be global: the declared maps are refused
])
def test_bad_spatial_model_json(tmp_path, spatial, change, fragment):
    from vae import export
    models = tmp_path / "models"
    shutil.copytree(spatial["models"], models)
    meta = json.loads((models / "model.json").read_text())
    meta.update(change)
    (models / "model.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
    with pytest.raises(UserError) as e:
        export.Models(str(models))
    assert fragment in str(e.value) and str(models) in str(e.value)


def test_global_models_said_to_be_spatial_are_refused(tmp_path, exported):
    from vae import export
    models = copy_models(exported, tmp_path / "models")
    meta = json.loads((models / "model.json").read_text())
    (models / "model.json").write_text(json.dumps({**meta, "latent": "spatial", "downsample": 8}))
    with pytest.raises(UserError) as e:
        export.Models(str(models))
    assert str(models / "encoder") in str(e.value) and "expected float32 [N,?,?,32]" in str(e.value)


def test_spatial_embeddings_have_the_channel_count(tmp_path):
    path = tmp_path / "embeddings.json"
    path.write_text(json.dumps(embeddings(codes=16)))
    safety.check_embeddings(str(path), 16)
    with pytest.raises(UserError, match="16 codes but the models use 32"):
        safety.check_embeddings(str(path), 32)
