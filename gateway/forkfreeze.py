"""Imported last by a fork server (the workers', a worker's SIP processes'), for its side effect: the heap
it holds is frozen.

Children fork from that server and share its pages until they write to them.
Their garbage collector would visit every object the server imported and
write to each header, copying about 15 MiB of shared pages into every
worker; frozen objects are never visited (an idle worker: 26.6 MiB PSS
before, measured below in docs/scaling.md after).
"""

import gc

gc.collect()
gc.freeze()
