"""Print the zoo table: every registered model's parameters, GFLOPs and receptive field at its usual input size.

    python benchmarks/model_zoo.py [--num-classes 1000] [--pattern "resnet*"]

Counts come from course_lib itself (meta-device models, torch.utils.flop_counter);
a multiply-add counts as 2 FLOPs, so GMACs = GFLOPs / 2. Next to each computed
count, ``published`` is the count its registration records for that configuration
("-" when none is recorded). The receptive field is that of the last spatial map before
global pooling / flatten ("-" with the reason in ``note`` when it cannot be computed; "global
context" for squeeze-and-excitation / attention networks); ``top1`` is torchvision's ImageNet
top-1 for the same architecture (IMAGENET1K_V1 weights, read offline).
"""

from __future__ import annotations

import argparse

import pandas as pd

from course_lib.models import list_models, zoo_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--pattern", default="*", help="shell pattern of model names")
    args = parser.parse_args()
    table = pd.DataFrame(zoo_table(list_models(args.pattern), num_classes=args.num_classes))
    for column in ("parameters", "published"):
        table[column] = table[column].map(lambda count: "-" if pd.isna(count) else f"{int(count):,}")
    table["gflops"] = table["gflops"].map("{:.3f}".format)
    table["receptive_field"] = table["receptive_field"].map(lambda r: "-" if pd.isna(r) else f"{int(r)}")
    table["top1"] = table["top1"].map(lambda a: "-" if pd.isna(a) else f"{a:.2f}")
    table = table.rename(columns={"receptive_field_note": "note"}).drop(columns=["top1_source"])
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
