"""Writes the diabetes regression data set (442 patients, 10 baseline measurements, disease
progression one year later; Efron et al. 2004) as one CSV with a header, from the raw copy that
a scikit-learn wheel ships (sklearn/datasets/data/diabetes_data_raw.csv.gz and
diabetes_target.csv.gz). The values are the raw, unscaled ones.

usage: python3 scripts/diabetes_from_sklearn.py SCIKIT_LEARN.whl OUT.csv
"""

import gzip
import os
import sys
import zipfile

COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "progression"]


def main(wheel: str, out: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        data = gzip.decompress(archive.read("sklearn/datasets/data/diabetes_data_raw.csv.gz")).decode()
        target = gzip.decompress(archive.read("sklearn/datasets/data/diabetes_target.csv.gz")).decode()
    rows = [line.split() for line in data.splitlines() if line.strip()]
    targets = [float(line) for line in target.splitlines() if line.strip()]
    if len(rows) != 442 or len(targets) != 442 or any(len(r) != 10 for r in rows):
        sys.exit(f"{wheel}: unexpected diabetes data ({len(rows)} rows, {len(targets)} targets)")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    partial = out + ".partial"
    with open(partial, "w") as handle:
        handle.write(",".join(COLUMNS) + "\n")
        for row, value in zip(rows, targets):
            handle.write(",".join(row + [f"{value:g}"]) + "\n")
    os.replace(partial, out)
    print(f"wrote {out}: {len(rows)} rows, {len(COLUMNS) - 1} features and the target")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
