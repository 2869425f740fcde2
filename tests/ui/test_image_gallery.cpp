// The gallery: a folder of 5,000 images opens at once (listing only), thumbnails are decoded
// off the GUI thread for the visible items only, and the keyboard moves the current image.

#include <sys/stat.h>

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QListView>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include "fec/ui/image_gallery.h"

using namespace fec::ui;

class TestImageGallery : public QObject {
    Q_OBJECT

private Q_SLOTS:
    void initTestCase()
    {
        QVERIFY(m_dir.isValid());
        QImage image(160, 120, QImage::Format_RGB888);
        image.fill(QColor(200, 120, 40));
        const QString first = m_dir.filePath(QStringLiteral("img00000.png"));
        QVERIFY(image.save(first));
        // 5,000 files; hard links keep this fast and small.
        for (int i = 1; i < 5000; ++i) {
            const QString path = m_dir.filePath(QStringLiteral("img%1.png").arg(i, 5, 10, QLatin1Char('0')));
            QVERIFY(QFile::link(first, path) || QFile::copy(first, path));
        }
        QFile text(m_dir.filePath(QStringLiteral("notes.txt")));
        QVERIFY(text.open(QIODevice::WriteOnly));
        text.write("not an image");
    }

    void opensAHugeFolderInstantly()
    {
        ImageGallery gallery;
        gallery.resize(300, 500);
        gallery.show();
        QVERIFY(QTest::qWaitForWindowExposed(&gallery));
        QElapsedTimer timer;
        timer.start();
        const int n = gallery.setFolder(m_dir.path());
        QApplication::processEvents();  // first layout and paint of the visible items
        const qint64 ms = timer.elapsed();
        QCOMPARE(n, 5000);
        QVERIFY2(ms < 1500, qPrintable(QStringLiteral("opening took %1 ms").arg(ms)));
        qInfo("listing + first paint of 5,000 images: %lld ms", ms);
        // Only what is visible gets decoded.
        QTRY_VERIFY_WITH_TIMEOUT(gallery.model()->decodedCount() > 0, 10000);
        QTRY_VERIFY_WITH_TIMEOUT(!gallery.model()->isDecoding(), 20000);
        QVERIFY2(gallery.model()->decodedCount() < 200,
                 qPrintable(QStringLiteral("%1 thumbnails decoded").arg(gallery.model()->decodedCount())));
        // Decoded thumbnails replace the placeholder.
        const QIcon icon = gallery.model()->data(gallery.model()->index(0), Qt::DecorationRole).value<QIcon>();
        const QImage thumb = icon.pixmap(GalleryModel::kThumbnailSize).toImage();
        QVERIFY(!thumb.isNull());
        const QColor centre = thumb.pixelColor(thumb.width() / 2, thumb.height() / 2);
        QVERIFY2(centre.red() > 150 && centre.blue() < 100, qPrintable(centre.name()));
    }

    void keyboardChangesTheCurrentImage()
    {
        ImageGallery gallery;
        gallery.resize(300, 500);
        gallery.show();
        QVERIFY(QTest::qWaitForWindowExposed(&gallery));
        gallery.setFolder(m_dir.path());
        QSignalSpy current(&gallery, &ImageGallery::currentImageChanged);
        gallery.setCurrentPath(gallery.model()->path(0));
        QCOMPARE(current.size(), 1);
        QVERIFY(current.last().first().toString().endsWith(QStringLiteral("img00000.png")));
        gallery.view()->setFocus();
        QTest::keyClick(gallery.view(), Qt::Key_Right);
        QCOMPARE(current.size(), 2);
        QVERIFY(current.last().first().toString().endsWith(QStringLiteral("img00001.png")));
        QTest::keyClick(gallery.view(), Qt::Key_End);
        QVERIFY(current.last().first().toString().endsWith(QStringLiteral("img04999.png")));
        QTest::keyClick(gallery.view(), Qt::Key_Home);
        QVERIFY(current.last().first().toString().endsWith(QStringLiteral("img00000.png")));
        gallery.step(3);
        QVERIFY(current.last().first().toString().endsWith(QStringLiteral("img00003.png")));
        gallery.step(-10);
        QVERIFY(current.last().first().toString().endsWith(QStringLiteral("img00000.png")));
    }

    void listsOnlyImagesInNaturalOrder()
    {
        QTemporaryDir dir;
        QImage image(8, 8, QImage::Format_RGB888);
        image.fill(Qt::red);
        for (const char* name : {"b10.png", "b2.PNG", "a.jpg", "c.bmp"})
            QVERIFY(image.save(dir.filePath(QString::fromLatin1(name))));
        QFile(dir.filePath(QStringLiteral("readme.md"))).open(QIODevice::WriteOnly);
        GalleryModel model;
        QCOMPARE(model.setFolder(dir.path()), 4);
        QStringList names;
        for (int i = 0; i < model.count(); ++i)
            names << QFileInfo(model.path(i)).fileName();
        QCOMPARE(names, QStringList({QStringLiteral("a.jpg"), QStringLiteral("b2.PNG"), QStringLiteral("b10.png"),
                                     QStringLiteral("c.bmp")}));
        QVERIFY(GalleryModel::isImageFile(QStringLiteral("x.TIFF")));
        QVERIFY(!GalleryModel::isImageFile(QStringLiteral("x.pth")));
    }

    void unreadableFilesGetABrokenPlaceholder()
    {
        QTemporaryDir dir;
        const QString bad = dir.filePath(QStringLiteral("broken.png"));
        QFile f(bad);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("garbage");
        f.close();
        ImageGallery gallery;
        gallery.show();
        QVERIFY(QTest::qWaitForWindowExposed(&gallery));
        gallery.setFiles({bad});
        QApplication::processEvents();
        QTRY_VERIFY_WITH_TIMEOUT(gallery.model()->decodedCount() == 1, 10000);
        QVERIFY(!gallery.model()->isDecoding());
        QCOMPARE(gallery.model()->problem(0), QStringLiteral("not an image that can be decoded"));
    }

    // A 60-byte PNG that claims 100,000 x 100,000 pixels: refused from its header, before any
    // decoder allocates, with the reason in the tooltip; the real image beside it still decodes.
    void decompressionBombsAreRefusedFromTheirHeader()
    {
        QTemporaryDir dir;
        const QString bomb = dir.filePath(QStringLiteral("bomb.png"));
        {
            QFile f(bomb);
            QVERIFY(f.open(QIODevice::WriteOnly));
            QByteArray png("\x89PNG\r\n\x1a\n", 8);
            png += QByteArray("\x00\x00\x00\x0dIHDR", 8);
            png += QByteArray("\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00", 13);  // 100000 x 100000 RGB
            png += QByteArray(4, '\0');                                                     // CRC (never read)
            png += QByteArray("\x00\x00\x00\x0cIDAT", 8) + QByteArray(16, '\0');
            f.write(png);
        }
        const QString good = dir.filePath(QStringLiteral("good.png"));
        QImage image(40, 30, QImage::Format_RGB888);
        image.fill(Qt::blue);
        QVERIFY(image.save(good));

        // A FIFO named like an image: opening it would wait for a writer forever.
        const QString fifo = dir.filePath(QStringLiteral("pipe.png"));
        QCOMPARE(::mkfifo(QFile::encodeName(fifo).constData(), 0600), 0);

        ImageGallery gallery;
        gallery.show();
        QVERIFY(QTest::qWaitForWindowExposed(&gallery));
        gallery.setFiles({bomb, good, fifo});
        QApplication::processEvents();
        QTRY_VERIFY_WITH_TIMEOUT(gallery.model()->decodedCount() == 3 && !gallery.model()->isDecoding(), 10000);
        QCOMPARE(gallery.model()->problem(gallery.model()->rowOf(fifo)), QStringLiteral("not a regular file"));
        const int bombRow = gallery.model()->rowOf(bomb);
        const QString problem = gallery.model()->problem(bombRow);
        QVERIFY2(problem.contains(QStringLiteral("100000 x 100000")) && problem.contains(QStringLiteral("limit")),
                 qPrintable(problem));
        QVERIFY(gallery.model()->data(gallery.model()->index(bombRow), Qt::ToolTipRole).toString().contains(problem));
        QVERIFY(gallery.model()->problem(gallery.model()->rowOf(good)).isEmpty());
    }

private:
    QTemporaryDir m_dir;
};

QTEST_MAIN(TestImageGallery)
#include "test_image_gallery.moc"
