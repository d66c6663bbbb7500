// Image files through OpenCV's imgcodecs, apart from cvwrap.cpp so that only
// the programs that read or write image files load imgcodecs (cvwrap.cpp).
#include "cvwrap/cvwrap.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

static int imwrite_gray(const char *path, const uint8_t *img, int w, int h, int stride,
			const std::vector<int> &params)
{
	if (!path || !img || w <= 0 || h <= 0 || stride < w)
		return -EINVAL;
	try {
		cv::Mat m(h, w, CV_8UC1, const_cast<uint8_t *>(img), (size_t)stride);
		if (!cv::imwrite(path, m, params))
			return -EIO;
	} catch (const std::exception &) {
		return -EIO;
	}
	return 0;
}

extern "C" int cvw_imwrite_gray(const char *path, const uint8_t *img, int w, int h, int stride)
{
	return imwrite_gray(path, img, w, h, stride, {});
}

extern "C" int cvw_imwrite_gray_stored(const char *path, const uint8_t *img, int w, int h,
				       int stride)
{
	return imwrite_gray(path, img, w, h, stride, { cv::IMWRITE_PNG_COMPRESSION, 0 });
}

static int copy_out(cv::Mat &m, uint8_t **img, int *w, int *h)
{
	if (!m.isContinuous())
		m = m.clone();
	size_t n = (size_t)m.rows * (size_t)m.cols;
	uint8_t *buf = (uint8_t *)malloc(n);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, m.data, n);
	*img = buf;
	*w = m.cols;
	*h = m.rows;
	return 0;
}

extern "C" int cvw_imdecode_gray(const void *buf, size_t len, uint8_t **img, int *w, int *h)
{
	if (!buf || !len || len > (size_t)INT32_MAX || !img || !w || !h)
		return -EINVAL;
	try {
		cv::Mat raw(1, (int)len, CV_8UC1, const_cast<void *>(buf));
		cv::Mat m = cv::imdecode(raw, cv::IMREAD_GRAYSCALE);
		if (m.empty())
			return -EINVAL;
		return copy_out(m, img, w, h);
	} catch (const std::exception &) {
		return -EINVAL;
	}
}

extern "C" int cvw_imread_gray(const char *path, uint8_t **img, int *w, int *h)
{
	if (!path || !img || !w || !h)
		return -EINVAL;
	try {
		cv::Mat m = cv::imread(path, cv::IMREAD_GRAYSCALE);
		if (m.empty())
			return -ENOENT;
		if (!m.isContinuous())
			m = m.clone();
		size_t n = (size_t)m.rows * (size_t)m.cols;
		uint8_t *buf = (uint8_t *)malloc(n);
		if (!buf)
			return -ENOMEM;
		memcpy(buf, m.data, n);
		*img = buf;
		*w = m.cols;
		*h = m.rows;
	} catch (const std::exception &) {
		return -EIO;
	}
	return 0;
}
