//! Test harness: starts a real kube-apiserver and etcd, and the emulator. Filled in by the control-plane issue.
