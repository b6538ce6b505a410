"""course_lib: the library behind the hands-on course on convolutional neural networks.

Chapters and labs import everything they share from here::

    from course_lib import get_device, seed_everything, scaled
    from course_lib.data import load_dataset, load_photo
    from course_lib.layers import functional as CF
"""

from .config import SCALES, get_device, get_scale, is_full_scale, scaled, seed_everything, use_book_threads
from .notebook import register_figure_descriptions

register_figure_descriptions()

__version__ = "0.1.0"

__all__ = ["SCALES", "get_device", "get_scale", "is_full_scale", "scaled", "seed_everything", "use_book_threads", "__version__"]
