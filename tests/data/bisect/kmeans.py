# envcap bisect e2e: KMeans without n_init; its default changed from 10 to "auto" in scikit-learn 1.4.
import json, pathlib, warnings
import numpy as np
from sklearn.cluster import KMeans
warnings.simplefilter("ignore")
rng = np.random.RandomState(0)
X = np.vstack([rng.normal(loc=c, scale=1.2, size=(60, 2)) for c in ((0, 0), (3, 3), (0, 4), (4, 0))])
km = KMeans(n_clusters=4, random_state=0).fit(X)
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
(out / "kmeans.json").write_text(json.dumps({"inertia": float(km.inertia_), "n_iter": int(km.n_iter_),
    "centers": km.cluster_centers_.round(12).tolist()}, sort_keys=True))
print("inertia", km.inertia_)
