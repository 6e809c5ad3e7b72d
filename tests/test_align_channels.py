"""models/align_channels.py: zero-padding the skip channels keeps the model's outputs and aligns its layout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from guidance.detect import DEFAULT_MODEL  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _align_module():
    spec = importlib.util.spec_from_file_location("align_channels", REPO / "models" / "align_channels.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny_unet(rng: np.random.Generator):
    """image -> stem (8 ch) -> pointwise (24 ch) -> Concat(stem, 24 ch) -> depthwise -> head (4 ch) -> sigmoid.

    The same shapes as the committed model's skips (8 and 24 channels), with
    one weight shared by two layers through an Identity node, as the exporter writes it.
    """
    def conv(name, x, w, b, out, k=1, **attrs):
        return helper.make_node("Conv", [x, w, b], [out], name=name, pads=[k // 2] * 4, **attrs)

    inits = {
        "stem_w": rng.normal(size=(8, 1, 3, 3)), "stem_b": rng.normal(size=8),
        "pw_w": rng.normal(size=(24, 8, 1, 1)) / 3, "pw_b": rng.normal(size=24),
        "dw_w": rng.normal(size=(32, 1, 3, 3)) / 3, "dw_b": rng.normal(size=32),
        "head_w": rng.normal(size=(4, 32, 1, 1)) / 6, "head_b": rng.normal(size=4),
        "pw2_b": rng.normal(size=24),
    }
    nodes = [
        conv("stem", "image", "stem_w", "stem_b", "s0", k=3),
        helper.make_node("LeakyRelu", ["s0"], ["a0"], alpha=0.05),
        conv("pw", "a0", "pw_w", "pw_b", "s1"),
        helper.make_node("LeakyRelu", ["s1"], ["a1"], alpha=0.05),
        helper.make_node("Identity", ["pw_w"], ["pw_w_shared"]),
        conv("pw_again", "a0", "pw_w_shared", "pw2_b", "s2"),  # a second layer with the same weights
        helper.make_node("Relu", ["s2"], ["a2"]),
        helper.make_node("Concat", ["a0", "a1"], ["cat"], axis=1),
        conv("dw", "cat", "dw_w", "dw_b", "d", k=3, group=32),
        helper.make_node("LeakyRelu", ["d"], ["ad"], alpha=0.05),
        conv("head", "ad", "head_w", "head_b", "h"),
        helper.make_node("Sigmoid", ["h"], ["probs"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 32, 32])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4, 32, 32]),
                               helper.make_tensor_value_info("a2", TensorProto.FLOAT, [1, 24, 32, 32])],
                              [nh.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})


def _concat_input_channels(model) -> list[int]:
    g = model.graph
    inits = {i.name: nh.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def channels(t):
        n = producer[t]
        return inits[n.input[1]].shape[0] if n.op_type == "Conv" else channels(n.input[0])

    return [channels(t) for n in g.node if n.op_type == "Concat" for t in n.input]


def test_aligned_model_computes_the_same_outputs_with_skips_in_whole_blocks():
    rng = np.random.default_rng(3)
    model = _tiny_unet(rng)
    x = rng.random((1, 1, 32, 32), np.float32)
    before = _run(model, x)
    assert _concat_input_channels(model) == [8, 24]
    aligned = _align_module().align_channels(model, block=16)
    after = _run(aligned, x)
    assert _concat_input_channels(aligned) == [16, 32]
    assert after[0].shape == (1, 4, 32, 32)  # the outputs keep their channels
    assert after[1].shape == (1, 24, 32, 32)  # and the layer sharing the padded one's weights keeps its own
    np.testing.assert_allclose(after[0], before[0], atol=1e-5)
    np.testing.assert_allclose(after[1], before[1], atol=1e-5)


def test_committed_model_is_aligned_so_onnxruntime_keeps_its_blocked_layout():
    model = onnx.load(str(DEFAULT_MODEL))
    chans = _concat_input_channels(model)
    assert chans and all(c % 16 == 0 for c in chans), chans
    # aligning again changes nothing: a retrain's export gives the same kind of file
    again = _align_module().align_channels(onnx.load(str(DEFAULT_MODEL)))
    assert _concat_input_channels(again) == chans


def test_a_graph_it_cannot_pad_is_refused_with_the_node_named():
    rng = np.random.default_rng(4)
    model = _tiny_unet(rng)
    model.graph.node.insert(1, helper.make_node("Transpose", ["s0"], ["s0t"], name="odd_transpose", perm=[0, 1, 3, 2]))
    with pytest.raises(ValueError, match="odd_transpose.*Transpose"):
        _align_module().align_channels(model)


def test_the_command_names_a_missing_or_corrupt_file_and_writes_nothing(tmp_path, capsys):
    main = _align_module().main
    out = tmp_path / "aligned.onnx"
    assert main([str(tmp_path / "absent.onnx"), str(out)]) == 2
    assert "absent.onnx: No such file" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model at all" * 20)
    assert main([str(junk), str(out)]) == 2
    assert "junk.onnx" in capsys.readouterr().err
    assert not out.exists()
    # and a good one is written, computing what the original did
    src = tmp_path / "tiny.onnx"
    src.write_bytes(_tiny_unet(np.random.default_rng(5)).SerializeToString())
    assert main([str(src), str(out)]) == 0
    assert _concat_input_channels(onnx.load(str(out))) == [16, 32]
