"""Interoperability with the tools of image-guided therapy.

- :mod:`guidance.io.plus`: PLUS toolkit sequence files (``.igs.mha``, ``.mha``,
  ``.mhd``, ``.seq.nrrd``, ``.nrrd``), read, written and replayed.
- :mod:`guidance.io.dicom`: ultrasound DICOM (cine loops, single-frame
  series), de-identified on import.
- :mod:`guidance.io.igtl`: OpenIGTLink: images from a PLUS server, results to
  3D Slicer.
- :mod:`guidance.io.images`: still images decoded without OpenCV's log lines.

Modules are imported on demand, so a missing optional dependency only affects
the format that needs it.
"""
