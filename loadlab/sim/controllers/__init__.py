"""The control loops the seeded cluster implies: the scheduler and a kubelet's start-up for created
pods, and the EndpointSlice controller. Clients of the store, as kube-controller-manager is a
client of the API: they list, watch and write through ``Store``'s public methods and the
registry's ``k8s.strategies``. They may import the sim's rooms below the API server (k8s,
storage, overload), its config and promtext, and the shared clock and errors; nothing of HTTP.
"""
