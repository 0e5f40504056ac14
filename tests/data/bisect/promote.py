# envcap bisect e2e: NEP 50 (NumPy 2): float32 scalar * Python float stays float32 (float64 in NumPy 1.x).
import json, pathlib
import numpy as np
w = np.float32(0.1)
total = w * 3.3 + np.float32(1.0) / 3.0
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
(out / "promote.json").write_text(json.dumps({"dtype": str(np.asarray(total).dtype), "value": repr(float(total))}))
print(np.asarray(total).dtype, float(total))
