"""The gateway's side of a cluster: which invoker a call goes to."""
