"""A small stand-in of the AUTOMATIC1111 WebUI 1.10.1 modules the extension touches.

Mirrors the real signatures and hook order of `modules/scripts.py`, `modules/processing.py`
(`process_images_inner`, `create_infotext`), `modules/shared_state.py`,
`modules/script_callbacks.py`, `modules/images.py` and `modules/errors.py` at tag v1.10.1
(kklouzal/stable-diffusion-webui, commit 82a973c0). Sampling is replaced by a recorder that
paints a colour from the prompt and seed, so tests can see which prompt reached which pass.
"""
