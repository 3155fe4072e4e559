"""Measure a bundle against the default-bundle bar (docs/default-bundle.md) and print JSON.

    python scripts/evaluate_bundle.py cfattack/assets/default --out metrics.json

Generator: Fréchet distance in the default classifier's embedding (generated vs test, and the
val-vs-test floor) and class coverage of 5,000 samples. Encoder: PSNR/SSIM and label agreement
on 200 real test images, encoder alone and with 100 refinement steps. Classifier: test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time

from cfattack.bundle.loader import load_bundle
from cfattack.config import InversionConfig
from cfattack.quality.generator_quality import generator_quality
from cfattack.inversion.inverter import Inverter
from cfattack.quality.metrics import accuracy, macro_f1, predict_probabilities
from cfattack.training.data import load_fashion_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--out", default=None)
    parser.add_argument("--num", type=int, default=5000)
    parser.add_argument("--inversion-images", type=int, default=200)
    parser.add_argument("--refine-steps", type=int, default=100)
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    clf = bundle.classifier()
    test, val = load_fashion_mnist("test"), load_fashion_mnist("val")
    report: dict = {"bundle": bundle.spec.name}

    started = time.perf_counter()
    probs = predict_probabilities(clf, test.images)
    pred = probs.argmax(1)
    report["classifier_test_accuracy"] = accuracy(test.labels, pred)
    report["classifier_test_macro_f1"] = macro_f1(test.labels, pred)

    report["generator"] = generator_quality(bundle.generator, clf, test.images, val.images, bundle.class_names,
                                            num=args.num)

    images = test.images[: args.inversion_images]
    for steps in (0, args.refine_steps):
        inv = Inverter(bundle.generator, encoder=bundle.encoder, classifier=clf,
                       config=InversionConfig(steps=steps))
        result = inv.invert(images)
        report[f"inversion_{steps}_steps"] = {
            "images": int(images.shape[0]),
            "mean_psnr": float(result.psnr.mean()),
            "mean_ssim": float(result.ssim.mean()),
            "label_agreement": float(result.label_match.float().mean()),
            "flagged_share": float(result.flagged.float().mean()),
            "seconds": round(result.seconds, 1),
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
