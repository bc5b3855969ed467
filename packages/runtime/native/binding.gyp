# Built by scripts/build.mjs (which sets the TSINFER_* variables below):
#   onnxruntime 1.29.0 headers from the npm package com.github.asus4.onnxruntime@0.4.9,
#   linked against onnxruntime-node 1.29.0's libonnxruntime.so.1.
{
  "targets": [
    {
      "target_name": "tsinfer_native",
      "sources": ["src/addon.cc"],
      "include_dirs": [
        "<!(node -p \"process.env.TSINFER_NAPI_INCLUDE\")",
        "<!(node -p \"process.env.TSINFER_ORT_INCLUDE\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "ORT_API_MANUAL_INIT"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2", "-Wall", "-Wno-unused-parameter"],
      "libraries": [
        "-L<!(node -p \"process.env.TSINFER_ORT_LIB_DIR\")",
        "-l:libonnxruntime.so.1",
        "-ldl",
        "-Wl,-rpath,<!(node -p \"process.env.TSINFER_ORT_LIB_DIR\")"
      ]
    }
  ]
}
