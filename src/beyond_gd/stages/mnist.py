"""Stage `mnist`: the four MNIST IDX files, from the first source in `mnist.sources` that works.

Writes `data/mnist/MNIST/raw/*-ubyte`, the layout `torchvision.datasets.MNIST(root,
download=False)` reads, after checking every file's MD5.
"""

from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import mnist

STAGE = Stage("mnist", mnist.Config, mnist.run, __doc__, outputs=MNIST)

if __name__ == "__main__":
    main(STAGE)
