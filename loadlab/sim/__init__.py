"""The embedded control plane: a simulated kube-apiserver (with APF and an overload model) and a
CoreDNS-like cluster DNS. A separate program that loadlab starts; it imports nothing from the
generator side (engine, targets, metrics, analysis).
"""
