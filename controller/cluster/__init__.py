"""More than one controller instance: who is master of the switches (leadership held by an
etcd lease), controller/cluster/leader.py; its etcd client, controller/cluster/etcd.py."""
