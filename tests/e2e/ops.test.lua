-- Agent operations against the default image (a real kernel).
require("helpers.ops_suite")("default")
