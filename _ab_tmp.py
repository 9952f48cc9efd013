import sys
from be import embedded_ordered as o
from fe.bench import growth
mode = sys.argv[1]
if mode == "off":
    o.walk = lambda *a, **k: None
    o.count = lambda *a, **k: None
for i in range(2):
    f = growth.measure(20000)
    print(mode, {k: round(v, 3) for k, v in f.items()}, flush=True)
