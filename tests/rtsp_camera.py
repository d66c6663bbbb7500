#!/usr/bin/python3
"""An IP camera for tests: gst-rtsp-server on loopback serving a live MJPEG
stream at rtsp://127.0.0.1:PORT/cam. Prints "ready PORT" when serving.

usage: rtsp_camera.py PORT [WIDTH HEIGHT FPS]
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

port = sys.argv[1]
width, height, fps = (sys.argv[2:5] + ["320", "240", "25"][len(sys.argv[2:5]):])
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},"
    f"framerate={fps}/1 ! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=90 ! "
    "rtpjpegpay name=pay0 pt=26 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
    sys.exit(1)
print(f"ready {port}", flush=True)
GLib.MainLoop().run()
