"""Measure int8 quantisation of the committed model: size, speed and the needle/bone figures.

    python models/quantize.py [--frames 60]

Writes the quantised models to a temporary folder (nothing is committed) and
prints one JSON object: per variant (fp32, int8 dynamic, int8 static with
QDQ calibrated on simulated frames of seeds the evaluation does not use) the
file size, the median onnxruntime inference time at 256x256 on this machine,
and the held-out figures of ``bench/eval_sim.py --stride 9`` with that model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def calibration_images(n: int) -> list[np.ndarray]:
    from guidance.sim import SimConfig, Simulator

    out = []
    for k, scn in enumerate(("insertion", "steep", "out_of_plane", "no_needle")):
        sim = Simulator(SimConfig(width_px=512, height_px=512, seed=5100 + k, scenario=scn))
        for i in np.linspace(0, len(sim) - 1, max(1, n // 4)).astype(int):
            img = cv2.resize(sim.render(int(i)).image, (256, 256), interpolation=cv2.INTER_AREA)
            out.append(img.astype(np.float32)[None, None] / 255.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import eval_sim
    from guidance.detect import DEFAULT_MODEL
    from guidance.detect.model import ModelDetector

    calib = calibration_images(args.frames)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"image": x}

    tmp = Path(tempfile.mkdtemp())
    pre = tmp / "pre.onnx"
    quant_pre_process(str(DEFAULT_MODEL), str(pre))
    variants = {"fp32": DEFAULT_MODEL, "int8_dynamic": tmp / "dyn.onnx", "int8_static_qdq": tmp / "static.onnx"}
    quantize_dynamic(str(pre), str(variants["int8_dynamic"]), weight_type=QuantType.QInt8)
    quantize_static(str(pre), str(variants["int8_static_qdq"]), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    out = {}
    for name, path in variants.items():
        res = {"bytes": path.stat().st_size}
        try:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 2
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            for x in calib[:5]:
                sess.run(None, {"image": x})
            ts = []
            for x in calib:
                t0 = time.perf_counter()
                sess.run(None, {"image": x})
                ts.append((time.perf_counter() - t0) * 1000)
            res["inference_median_ms"] = round(float(np.median(ts)), 2)
            det = ModelDetector(path)
            r = eval_sim.run_with(det, stride=9)
            res.update(r)
        except Exception as exc:  # a variant onnxruntime cannot run is a result too
            res["error"] = str(exc).splitlines()[0][:200]
        out[name] = res
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
