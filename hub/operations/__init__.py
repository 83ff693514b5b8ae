"""Operations: the health of each practice's feeds (``hub status``) and the alert rules that watch it
(``hub alerts``, the alert ticker of ``hub worker``). Described in docs/operations.md."""
