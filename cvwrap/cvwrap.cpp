// The C wrapper over OpenCV. Exceptions stop here: each entry point catches
// cv::Exception and std::exception and turns them into an errno-style code.
// Image files are read and written in cvwrap-io.cpp, so that a program that
// never touches one (the inference tests, infer-bench) links no
// libopencv_imgcodecs and none of its codec and GDAL libraries: the GPU kit
// (bench/gpu-kit.sh) carries what such a program loads.
#include "cvwrap/cvwrap.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <atomic>
#include <exception>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

#include <glib.h>

struct cvw_net {
	cv::dnn::Net net;
};

/* The one place a reason becomes the caller's string (g_free). */
static void set_err(char **err, const char *what)
{
	if (err)
		*err = g_strdup(what);
}

extern "C" int cvw_resize_gray(const uint8_t *src, int w, int h, int stride,
			       uint8_t *dst, int dw, int dh)
{
	if (!src || !dst || w <= 0 || h <= 0 || dw <= 0 || dh <= 0 || stride < w)
		return -EINVAL;
	try {
		cv::Mat in(h, w, CV_8UC1, const_cast<uint8_t *>(src), (size_t)stride);
		cv::Mat out(dh, dw, CV_8UC1, dst);
		int interp = (dw < w || dh < h) ? cv::INTER_AREA : cv::INTER_LINEAR;
		cv::resize(in, out, cv::Size(dw, dh), 0, 0, interp);
		if (out.data != dst) // resize reallocated: never expected, but be exact
			return -EFAULT;
	} catch (const std::exception &) {
		return -EIO;
	}
	return 0;
}

extern "C" int cvw_blur_gray(uint8_t *img, int w, int h, int stride, double sigma)
{
	if (!img || w <= 0 || h <= 0 || stride < w || !(sigma > 0))
		return -EINVAL;
	try {
		cv::Mat m(h, w, CV_8UC1, img, (size_t)stride);
		cv::GaussianBlur(m, m, cv::Size(0, 0), sigma);
	} catch (const std::exception &) {
		return -EIO;
	}
	return 0;
}

extern "C" int cvw_dark_spot(const uint8_t *src, int w, int h, int stride, int side,
			     int median, int box, int edge, double *score)
{
	if (!src || !score || w <= 0 || h <= 0 || stride < w || side < 8 || median < 3 ||
	    !(median & 1) || box < 1 || edge < 0)
		return -EINVAL;
	// Rounded half to even, as tools/dark_residual.py's round() does, so
	// that training and run time scale each image to the same size.
	double s = (double)side / (double)std::max(w, h);
	int dw = std::max(8, (int)std::nearbyint((double)w * s));
	int dh = std::max(8, (int)std::nearbyint((double)h * s));
	if (dw - 2 * edge < box || dh - 2 * edge < box)
		return -EINVAL;
	try {
		cv::Mat in(h, w, CV_8UC1, const_cast<uint8_t *>(src), (size_t)stride);
		cv::Mat g, med, r, dark;
		cv::resize(in, g, cv::Size(dw, dh), 0, 0, cv::INTER_AREA);
		cv::medianBlur(g, med, median);
		g.convertTo(r, CV_32F);
		med.convertTo(med, CV_32F);
		r -= med;
		// A copy, not a view: the box mean must not reach past the cut.
		r = r(cv::Rect(edge, edge, dw - 2 * edge, dh - 2 * edge)).clone();
		cv::blur(-r, dark, cv::Size(box, box));
		double lo, hi;
		cv::minMaxLoc(dark, &lo, &hi);
		// The median of |r|: r holds whole numbers -255..255, so a count
		// of each is exact; an even count takes the mean of the middle two.
		std::vector<size_t> count(256, 0);
		for (int y = 0; y < r.rows; y++) {
			const float *row = r.ptr<float>(y);
			for (int x = 0; x < r.cols; x++)
				count[(size_t)std::fabs(row[x])]++;
		}
		size_t n = (size_t)r.rows * (size_t)r.cols, seen = 0;
		int lo_mid = -1, hi_mid = -1;
		for (int v = 0; v < 256 && hi_mid < 0; v++) {
			seen += count[(size_t)v];
			if (lo_mid < 0 && seen >= (n + 1) / 2)
				lo_mid = v;
			if (seen >= n / 2 + 1)
				hi_mid = v;
		}
		double mad = n % 2 ? (double)lo_mid : ((double)lo_mid + (double)hi_mid) / 2;
		*score = (double)(float)hi / (mad + 1e-3);
	} catch (const std::exception &) {
		return -EIO;
	}
	return 0;
}

extern "C" cvw_net *cvw_net_load(const char *onnx_path, char **err)
{
	cvw_net *n = nullptr;

	try {
		n = new cvw_net;
		n->net = cv::dnn::readNetFromONNX(onnx_path);
		if (n->net.empty()) {
			set_err(err, "OpenCV DNN read an empty network");
			delete n;
			return nullptr;
		}
		n->net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
		n->net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
	} catch (const std::exception &e) {
		set_err(err, e.what());
		delete n;
		return nullptr;
	}
	return n;
}

extern "C" void cvw_net_free(cvw_net *net)
{
	delete net;
}

/* Resolves the NULL name to the one net output nobody else asked for. */
static int output_names(cvw_net *net, const struct cvw_output *outs, int n_out,
			std::vector<cv::String> &names, char **err)
{
	std::vector<cv::String> all = net->net.getUnconnectedOutLayersNames();

	for (int i = 0; i < n_out; i++) {
		if (outs[i].name) {
			if (std::find(all.begin(), all.end(), outs[i].name) == all.end()) {
				set_err(err, (std::string("the network has no output '") +
						      outs[i].name + "'").c_str());
				return -ENOENT;
			}
			names.push_back(outs[i].name);
			continue;
		}
		std::vector<cv::String> left;
		for (const cv::String &a : all) {
			bool named = false;
			for (int j = 0; j < n_out; j++)
				named = named || (outs[j].name && a == outs[j].name);
			if (!named)
				left.push_back(a);
		}
		if (left.size() != 1) {
			std::string msg = "cannot tell the main output among:";
			for (const cv::String &a : left)
				msg += " " + a;
			set_err(err, msg.c_str());
			return -ENOENT;
		}
		names.push_back(left[0]);
	}
	return 0;
}

extern "C" int cvw_net_forward(cvw_net *net, const float *in, const int *shape, int ndim,
			       struct cvw_output *outs, int n_out, char **err)
{
	if (!net || !in || !shape || ndim <= 0 || ndim > 4 || !outs || n_out <= 0)
		return -EINVAL;
	try {
		std::vector<cv::String> names;
		std::vector<cv::Mat> res;
		int rc = output_names(net, outs, n_out, names, err);

		if (rc < 0)
			return rc;
		cv::Mat blob(ndim, shape, CV_32F, const_cast<float *>(in));
		net->net.setInput(blob);
		net->net.forward(res, names);
		for (int i = 0; i < n_out; i++) {
			cv::Mat r = res[i].isContinuous() ? res[i] : res[i].clone();
			size_t n = r.total();

			outs[i].len = n;
			if (n > outs[i].cap || !outs[i].data) {
				set_err(err, "model output larger than expected");
				return -EOVERFLOW;
			}
			memcpy(outs[i].data, r.ptr<float>(), n * sizeof(float));
		}
	} catch (const std::exception &e) {
		set_err(err, e.what());
		return -EIO;
	}
	return 0;
}

void cvw_set_threads(int n)
{
	/* setNumThreads rebuilds OpenCV's pool: only on a change */
	static std::atomic<int> current{0};

	if (n >= 1 && current.exchange(n) != n) {
		try {
			cv::setNumThreads(n);
		} catch (...) {
		}
	}
}
