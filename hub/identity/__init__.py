"""Cross-site patient identity: the master patient index.

Every patient record (practice, source id) is linked to one enterprise id, opaque and random. The
index pairs records by deterministic rules (a shared enterprise identifier, the same SSN or MBI, the
same MRN of a shared EHR instance), then scores the rest with a probabilistic model (splink on
DuckDB, ``hub.identity.matcher``): pairs above the link threshold are linked, pairs between the two
thresholds wait in the review queue, merges from the sources (ADT A40/A34, FHIR ``Patient.link``)
join their records, and an operator's link or split wins over all of it and survives reruns.

- ``hub.identity.mpi``: the run (``hub identity run``), incremental by default;
- ``hub.identity.review``: the review queue, manual links and splits, explain and export;
- ``hub.identity.cluster``: pairs to clusters to stable ids;
- ``hub.identity.features``: what is compared, normalised.

The reports count enterprise ids (``identity_links``); see docs/identity.md.
"""
