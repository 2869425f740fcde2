// Paper-style figures as PNG, SVG and PDF: what a reader of the file finds in it.

#include <filesystem>
#include <regex>
#include <string>

#include <gtest/gtest.h>

#include <opencv2/core.hpp>

#include <QFile>
#include <QGuiApplication>
#include <QImage>
#include <QXmlStreamReader>

#include "fec/figure/figure.h"

namespace fs = std::filesystem;

namespace fec::figure {
namespace {

fs::path tempDir()
{
    auto dir = fs::temp_directory_path() / ("fec-figure-test-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    return dir;
}

QString pathIn(const std::string& name)
{
    return QString::fromStdString((tempDir() / name).string());
}

QByteArray readAll(const QString& path)
{
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly))
        return {};
    return file.readAll();
}

QImage solid(int width, int height, QColor colour)
{
    QImage image(width, height, QImage::Format_RGB888);
    image.fill(colour);
    return image;
}

QImage noisy(int width, int height, int seed)
{
    cv::Mat m(height, width, CV_8UC3);
    cv::RNG(seed).fill(m, cv::RNG::UNIFORM, 0, 256);
    return toQImage(m);
}

std::vector<FigureRow> twoByFour()
{
    std::vector<FigureRow> rows(2);
    rows[0].label = QStringLiteral("chelsea");
    rows[1].label = QStringLiteral("noise");
    for (int r = 0; r < 2; ++r) {
        for (int c = 0; c < 4; ++c) {
            FigurePanel panel;
            panel.title = QStringLiteral("Level %1 · row %2 (%3 empty)").arg(c + 1).arg(r).arg(c * 3);
            // The first panel is a solid red square so that its drawn size can be measured.
            panel.image =
                r == 0 && c == 0 ? solid(64, 64, QColor(255, 0, 0)) : noisy(40 + 10 * c, c == 2 ? 30 : 40, r * 4 + c);
            rows[r].panels.push_back(panel);
        }
    }
    rows[0].legend.entries = {{QColor(230, 159, 0), QStringLiteral("group 1")},
                              {QColor(86, 180, 233), QStringLiteral("group 2")}};
    return rows;
}

// Registered first so that it runs before the fixture below creates the application.
TEST(FigureWithoutApplication, RefusesClearly)
{
    if (QCoreApplication::instance())
        GTEST_SKIP() << "a QGuiApplication already exists";
    const QString path = pathIn("no-app.png");
    try {
        writeFigure(twoByFour(), path, FigureOptions{});
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("QGuiApplication"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(QFile::exists(path));
}

class Figure : public ::testing::Test {
protected:
    static void SetUpTestSuite()
    {
        if (!qEnvironmentVariableIsSet("QT_QPA_PLATFORM"))
            qputenv("QT_QPA_PLATFORM", "offscreen");
        if (!QCoreApplication::instance()) {
            static int argc = 1;
            static char name[] = "test_figure";
            static char* argv[] = {name, nullptr};
            new QGuiApplication(argc, argv);
        }
    }
};

int exactlyRed(const QImage& image)
{
    const QImage rgb = image.convertToFormat(QImage::Format_RGB32);
    int count = 0;
    for (int y = 0; y < rgb.height(); ++y) {
        const auto* line = reinterpret_cast<const QRgb*>(rgb.constScanLine(y));
        for (int x = 0; x < rgb.width(); ++x)
            count += line[x] == qRgb(255, 0, 0);
    }
    return count;
}

TEST_F(Figure, PngSizeScalesWithDpiAndPanelsHaveTheirSize)
{
    const auto rows = twoByFour();
    FigureOptions options;
    options.caption = QStringLiteral("Segments of two inputs");
    options.dpi = 96;
    writeFigure(rows, pathIn("grid96.png"), options);
    options.dpi = 300;
    writeFigure(rows, pathIn("grid300.png"), options);

    QImage low, high;
    ASSERT_TRUE(low.load(pathIn("grid96.png")));
    ASSERT_TRUE(high.load(pathIn("grid300.png")));
    EXPECT_GT(low.width(), 4 * options.panelSize);
    EXPECT_GT(low.height(), 2 * options.panelSize);
    EXPECT_NEAR(high.width(), low.width() * 300.0 / 96.0, 2.0);
    EXPECT_NEAR(high.height(), low.height() * 300.0 / 96.0, 2.0);
    EXPECT_NEAR(high.dotsPerMeterX() * 0.0254, 300.0, 1.0);

    // The red panel fills a panelSize square (at 96 dpi), i.e. (panelSize * dpi / 96)^2 pixels.
    EXPECT_NEAR(exactlyRed(low), 256.0 * 256.0, 0.03 * 256 * 256);
    EXPECT_NEAR(exactlyRed(high), 800.0 * 800.0, 0.03 * 800 * 800);
}

TEST_F(Figure, SvgHasOneImagePerPanelAndTitlesAsText)
{
    const auto rows = twoByFour();
    FigureOptions options;
    options.caption = QStringLiteral("Two inputs");
    const QString path = pathIn("grid.svg");
    writeFigure(rows, path, options);

    QXmlStreamReader xml(readAll(path));
    int images = 0;
    QStringList texts;
    while (!xml.atEnd()) {
        if (xml.readNext() != QXmlStreamReader::StartElement)
            continue;
        if (xml.name() == QLatin1String("image"))
            ++images;
        else if (xml.name() == QLatin1String("text"))
            texts << xml.readElementText(QXmlStreamReader::IncludeChildElements).trimmed();
    }
    ASSERT_FALSE(xml.hasError()) << xml.errorString().toStdString();
    EXPECT_EQ(images, 8);
    for (const auto& row : rows) {
        EXPECT_TRUE(texts.contains(row.label)) << row.label.toStdString();
        for (const auto& panel : row.panels)
            EXPECT_TRUE(texts.contains(panel.title)) << panel.title.toStdString();
    }
    EXPECT_TRUE(texts.contains(options.caption));
    EXPECT_TRUE(texts.contains(QStringLiteral("group 2")));
}

TEST_F(Figure, PdfIsOnePageWithOneImagePerPanel)
{
    const auto rows = twoByFour();
    const QString path = pathIn("grid.pdf");
    writeFigure(rows, path, FigureOptions{});
    const std::string pdf = readAll(path).toStdString();
    ASSERT_GT(pdf.size(), 1000u);
    EXPECT_EQ(pdf.rfind("%PDF-", 0), 0u);
    const auto end = pdf.find_last_not_of("\r\n ");
    ASSERT_NE(end, std::string::npos);
    EXPECT_EQ(pdf.substr(end - 4, 5), "%%EOF");

    auto count = [&](const std::regex& re) {
        return std::distance(std::sregex_iterator(pdf.begin(), pdf.end(), re), std::sregex_iterator());
    };
    EXPECT_EQ(count(std::regex(R"(/Type\s*/Page\b)")), 1);
    EXPECT_EQ(count(std::regex(R"(/Subtype\s*/Image\b)")), 8);
    EXPECT_GE(count(std::regex(R"(/Type\s*/Font\b)")), 1) << "titles are text, not paths";
}

TEST_F(Figure, FailuresNameTheFileAndLeaveNothing)
{
    const auto rows = twoByFour();
    auto errorOf = [&](const QString& path, const std::vector<FigureRow>& r) -> std::string {
        try {
            writeFigure(r, path, FigureOptions{});
        } catch (const std::runtime_error& e) {
            return e.what();
        }
        return "";
    };
    const QString unknown = pathIn("grid.bmpx");
    EXPECT_NE(errorOf(unknown, rows).find(unknown.toStdString()), std::string::npos);
    EXPECT_FALSE(QFile::exists(unknown));
    const QString missing = pathIn("no-such-folder/grid.png");
    EXPECT_NE(errorOf(missing, rows).find(missing.toStdString()), std::string::npos);
    const QString empty = pathIn("empty.svg");
    EXPECT_NE(errorOf(empty, {}).find(empty.toStdString()), std::string::npos);
    EXPECT_FALSE(QFile::exists(empty));
}

TEST_F(Figure, ToQImageIsADeepRgbCopy)
{
    cv::Mat m(3, 5, CV_8UC3, cv::Scalar(10, 20, 30));
    const QImage image = toQImage(m);
    m.setTo(cv::Scalar(0, 0, 0));
    ASSERT_EQ(image.format(), QImage::Format_RGB888);
    EXPECT_EQ(image.size(), QSize(5, 3));
    EXPECT_EQ(image.pixel(4, 2), qRgb(10, 20, 30));
    EXPECT_TRUE(toQImage(cv::Mat()).isNull());
    EXPECT_THROW(toQImage(cv::Mat(2, 2, CV_32FC1)), std::invalid_argument);
}

}  // namespace
}  // namespace fec::figure
