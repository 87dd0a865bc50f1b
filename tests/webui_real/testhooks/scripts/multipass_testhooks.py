"""Installed by the acceptance suite only (as extensions/sd-webui-multipass-testhooks, loaded
after the extension): random-weight images hold no face, so the WebUI's face detector is
replaced by one that finds a face in the middle of every image. That lets the suite check
the face pass itself on the real WebUI (its nested pass, its paste)."""

from lib_multipass.faces.detect import Face
from lib_multipass.webui import engine


class CentreFace:
    name = "acceptance-suite centre face"

    def detect(self, image):
        width, height = image.size
        return [Face((width // 4, height // 4, 3 * width // 4, 3 * height // 4), 0.99)]


engine.webui_face_detector = lambda root: (CentreFace(), "")
