"""Raw primitives ("hazmat"): prefer the recipes exported by :mod:`secagg`.

All come from pycryptodome or are vetted constructions built on it
(Shamir sharing over a prime field, AES-CTR as a PRG).
"""
