# envcap bisect e2e: a dot product OpenBLAS splits across its threads (OMP_NUM_THREADS), so the sum differs.
import json, pathlib
import numpy as np
x = (np.arange(2_000_003, dtype=np.float64) % 977) / 977.0 - 0.4999
y = np.cos(np.arange(2_000_003, dtype=np.float64))
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
(out / "dot.json").write_text(json.dumps({"dot": float(x @ y)}))
print(float(x@y).hex())
