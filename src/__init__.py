"""The toolkit's package. Importing it turns on torch's huge-page allocation for large CPU tensors.

`THP_MEM_ALLOC_ENABLE=1` makes torch place CPU buffers of 2 MiB and more on transparent huge
pages. Without it every fresh multi-MB temporary (a gathered feature block, a score block, a
gradient) is page-faulted in 4 KiB pages, which made such steps 2-4x slower on the benchmark
machine (docs/performance.md). The entry scripts also set it before importing torch; an explicit
value in the environment wins.
"""
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
